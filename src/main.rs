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

/// Turns transparent huge pages off for this process, unless the user set mimalloc's own switch
/// (`MIMALLOC_ALLOW_THP`). mimalloc asks for huge pages on its arenas; on the VMs this project
/// runs on, a huge page first touched after a few idle seconds is handed over by the host slowly
/// (the guest reports free memory to the host in large blocks, and only huge pages come from
/// them). A one-off `captioner features --batch-size 1` over 16 images spent 2.2–2.6 s of its
/// 2.8–3.5 s in the kernel zeroing them; with 4 KiB pages, 0.2–0.3 s of 1.05–1.15 s, as fast as
/// the same command run again at once. Steady-state speed did not move (`bench encoder`,
/// `bench train`; docs/performance.md). mimalloc's own switch only works when set before its first
/// allocation, which precedes `main`; the process-wide `PR_SET_THP_DISABLE` covers every fault
/// from here on.
fn no_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: a process attribute; the call reads no memory of ours. On failure (an old kernel)
    // nothing changes but speed.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() {
    // SAFETY: sets a process-wide allocator option; -1 = keep freed memory mapped.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    no_transparent_huge_pages();
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
