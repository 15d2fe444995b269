//! The `captioner` command line: a thin layer over the library. Each subcommand lives in
//! `src/cli/<name>.rs`, parses its flags and calls the library.

mod cli;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            if err
                .downcast_ref::<captioner::Error>()
                .is_some_and(|e| matches!(e, captioner::Error::Interrupted))
            {
                eprintln!("interrupted");
                130
            } else {
                eprintln!("error: {err:#}");
                1
            }
        }
    };
    std::process::exit(code);
}
