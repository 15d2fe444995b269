//! The `captioner` command line: a thin layer over the library. Each subcommand lives in
//! `src/cli/<name>.rs`, parses its flags and calls the library.

mod cli;

use clap::Parser;

// glibc's malloc hands large buffers back to the kernel on free, and candle allocates a fresh output
// for every op: a training epoch spent ~15% of its time in page faults (perf). mimalloc, told never
// to purge freed memory, reuses it: `bench train --vocab 63` went from 5202 to 482 page faults.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (v2 and v3 alike; libmimalloc-sys has no
/// constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // SAFETY: sets a process-wide allocator option; -1 = keep freed memory mapped.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    // candle runs element-wise ops on a pool of its own whose threads spin after each op, beside
    // rayon's threads that run the matrix products: on 2 cores they fight. With the pool off
    // (element-wise ops are memory-bound anyway) `bench train --vocab 63` measured 8% faster
    // (backward 132 -> 117 ms). Set before any thread starts; the user's own setting wins.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    quiet_on_closed_stdout();
    let cli = cli::Cli::parse();
    let code = match cli::run(cli) {
        Ok(code) => code,
        // `captioner search ... | head`: the reader has what it wanted.
        Err(err) if cli::reader_gone(&err) => 0,
        Err(err) => {
            let code = cli::exit_code(&err);
            if code == 130 {
                eprintln!("interrupted");
            } else {
                eprintln!("error: {}", message(&err));
            }
            code
        }
    };
    std::process::exit(code);
}

/// `captioner bench train | head -1`: once the reader has gone, the next `println!` panics on
/// the broken pipe (Rust ignores SIGPIPE, so that a closed socket or a dead child's stdin is an
/// error to handle, not a kill). The reader has what it wanted: exit 0 quietly, as the commands
/// that write through `cli::output` do, instead of printing a panic and a backtrace. Every other
/// panic keeps the default report.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        // std's wording for a failed `print!` (library/std/src/io/stdio.rs) and EPIPE's.
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info)
    }));
}

/// The error and its causes, `: `-separated, leaving out a cause whose text the line already ends
/// with (the library's I/O errors show the operating system's words, which are also their source).
fn message(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}
