//! The `llm-gateway` command: set up logging, parse the command line, and run, check, hash a
//! key, encrypt a secret, or hand an operator subcommand (key, usage, health, config, audit,
//! master-key) to `llm_gateway::cli`. The work lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use llm_gateway::config::{self, MasterKey, Secrets};
use llm_gateway::runtime::{unenforced_fields, RuntimeStore};

/// sysexits EX_USAGE: the configuration is invalid.
const EX_CONFIG: u8 = 64;

/// mimalloc rather than glibc malloc: on `cargo bench --bench overhead` (chat, one core) it gave
/// 30.7k / 33.0k req/s at 32.5 / 30.2 µs CPU per request, against 28.5k / 26.3k at 35.0 / 37.8 µs.
/// (`RUSTFLAGS="--cfg system_alloc"` builds with the system allocator instead, for heap
/// profilers such as heaptrack that see only `malloc`; README "Memory".)
#[cfg(not(system_alloc))]
#[global_allocator]
static GLOBAL: mi::MiMalloc = mi::MiMalloc;

/// The global allocator on mimalloc's C API (`libmimalloc-sys`), asking for alignment only when
/// the layout needs more than mimalloc always gives.
///
/// Why not the `mimalloc` crate's `MiMalloc`: it passes every request to `mi_malloc_aligned`,
/// and mimalloc v3 serves an aligned request from the plain size class only when the class is a
/// power of two. Any other size (a 40-byte box, a 1,500-byte buffer) takes the over-allocating
/// path: `size + align - 1` bytes, often the next size class, and the page is marked as
/// holding interior pointers, which every later free on it pays for. Every block mimalloc hands
/// out is at least pointer-aligned (size classes are whole words, pages start aligned), so a
/// layout aligned to 8 or less takes `mi_malloc`, as std's `System` takes `malloc`. Measured:
/// README "Instructions per request".
#[cfg(not(system_alloc))]
#[allow(unsafe_code)]
mod mi {
    use std::alloc::{GlobalAlloc, Layout};
    use std::ffi::c_void;

    use libmimalloc_sys as ffi;

    /// The alignment every mimalloc block has: a machine word.
    const WORD: usize = std::mem::size_of::<usize>();

    pub struct MiMalloc;

    // SAFETY: each method forwards to the mimalloc function with the same contract (a null
    // pointer on failure, `ptr` from this allocator); the plain functions are used only when
    // `layout.align()` is at most the word alignment every mimalloc block has.
    unsafe impl GlobalAlloc for MiMalloc {
        #[inline]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if layout.align() <= WORD {
                unsafe { ffi::mi_malloc(layout.size()) as *mut u8 }
            } else {
                unsafe { ffi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8 }
            }
        }

        #[inline]
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            if layout.align() <= WORD {
                unsafe { ffi::mi_zalloc(layout.size()) as *mut u8 }
            } else {
                unsafe { ffi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8 }
            }
        }

        #[inline]
        unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
            unsafe { ffi::mi_free(ptr as *mut c_void) }
        }

        #[inline]
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if layout.align() <= WORD {
                unsafe { ffi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8 }
            } else {
                unsafe { ffi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8 }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Not null, and aligned to `align`.
        fn aligned(p: *mut u8, align: usize) -> bool {
            !p.is_null() && (p as usize).is_multiple_of(align)
        }

        /// Every size from 1 byte to 70 KiB (every size class on the way, small, medium and
        /// large pages) at every alignment from 1 to 4 KiB: the block is aligned, holds what was
        /// written, keeps it through a grow and a shrink, and `alloc_zeroed` gives zeros.
        #[test]
        fn every_layout_is_aligned_and_keeps_its_bytes() {
            let a = MiMalloc;
            let mut sizes: Vec<usize> = (1..=2048).collect();
            sizes.extend((2049..=70 * 1024).step_by(509));
            for align in (0..=12).map(|s| 1usize << s) {
                for &size in &sizes {
                    let layout = Layout::from_size_align(size, align).unwrap();
                    unsafe {
                        let z = a.alloc_zeroed(layout);
                        assert!(aligned(z, align), "zeroed {size}/{align}");
                        assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                        a.dealloc(z, layout);

                        let p = a.alloc(layout);
                        assert!(aligned(p, align), "alloc {size}/{align}");
                        let fill = (size % 251) as u8;
                        std::ptr::write_bytes(p, fill, size);
                        let grown = size * 2 + 24;
                        let q = a.realloc(p, layout, grown);
                        assert!(aligned(q, align), "grow {size}/{align}");
                        assert!(std::slice::from_raw_parts(q, size).iter().all(|&b| b == fill));
                        let shrunk = size.div_ceil(2);
                        let big = Layout::from_size_align(grown, align).unwrap();
                        let r = a.realloc(q, big, shrunk);
                        assert!(aligned(r, align), "shrink {size}/{align}");
                        assert!(std::slice::from_raw_parts(r, shrunk).iter().all(|&b| b == fill));
                        a.dealloc(r, Layout::from_size_align(shrunk, align).unwrap());
                    }
                }
            }
        }
    }
}

/// mimalloc's collect for the calling thread: frees its pages that are empty (also of blocks
/// other threads freed) and gives the freed memory back to the OS now; then gives back the
/// unused tail of each page still in use (`src/mimalloc_trim.c`). The server runs it on each
/// data-plane worker once a burst is over (`server::release`): after 2,000 streams, RSS stayed
/// at the burst's level without the collect, and a few long-lived blocks kept whole pages the
/// burst had grown resident without the trim (README "Memory").
#[cfg(not(system_alloc))]
#[allow(unsafe_code)]
fn release_memory() {
    // SAFETY: takes no pointers and touches only the allocator's own state; mimalloc allows it
    // on any thread at any time.
    unsafe { mi_collect(true) }
    // SAFETY: as above; it changes only pages the calling thread owns, and only their free
    // blocks (`src/mimalloc_trim.c`).
    let trimmed = unsafe { llmgw_mi_trim_thread() };
    tracing::debug!(trimmed, "allocator pages trimmed");
}

#[cfg(not(system_alloc))]
#[allow(unsafe_code)]
extern "C" {
    /// `void mi_collect(bool force)`, from the mimalloc `libmimalloc-sys` builds (it declares
    /// this one only with its `extended` feature).
    fn mi_collect(force: bool);
    /// `size_t llmgw_mi_trim_thread(void)`, `src/mimalloc_trim.c` (built by build.rs): shortens
    /// each partly used page of the calling thread to just past its last live block and gives
    /// the rest back to the OS; returns the bytes given back.
    fn llmgw_mi_trim_thread() -> usize;
}

#[cfg(all(test, not(system_alloc)))]
#[allow(unsafe_code)]
mod trim_tests {
    use super::{llmgw_mi_trim_thread, mi_collect};

    type Block = Box<[u64; 6]>;

    fn block(tag: u64) -> Block {
        Box::new([tag; 6])
    }

    /// The live blocks keep their tags (`0..`), and a new burst of 20,000 (tags from `first`)
    /// gets blocks that each keep their own tag while all are live, none shared with `live`.
    fn check_live_and_new_burst(live: &[Block], first: u64) {
        for (i, b) in live.iter().enumerate() {
            assert_eq!(**b, [i as u64; 6], "live block {i}");
        }
        let burst: Vec<Block> = (0..20_000).map(|i| block(first + i)).collect();
        for (i, b) in burst.iter().enumerate() {
            assert_eq!(**b, [first + i as u64; 6], "block {i} of the new burst");
        }
        let mut addrs: Vec<usize> = burst.iter().chain(live).map(|b| &**b as *const _ as usize).collect();
        addrs.sort_unstable();
        addrs.dedup();
        assert_eq!(addrs.len(), 20_000 + live.len(), "every block distinct");
    }

    /// On a fresh thread (pages of its own): a few long-lived blocks, then a burst in the same
    /// size class that grows their page to its full capacity, freed again. The trim gives the
    /// page's tail back; the live blocks keep their bytes; the page serves the next burst with
    /// blocks that do not overlap (each keeps its own tag while all are live); a second trim
    /// right after the first finds nothing more to give.
    #[test]
    fn trim_gives_back_what_a_burst_grew_and_keeps_live_blocks() {
        std::thread::spawn(|| {
            let live: Vec<Block> = (0..8).map(block).collect();
            let burst: Vec<Block> = (0..20_000).map(|i| block(1_000 + i)).collect();
            drop(burst);
            unsafe { mi_collect(true) };
            let trimmed = unsafe { llmgw_mi_trim_thread() };
            assert!(trimmed >= 32 * 1024, "gave back {trimmed} bytes");
            assert_eq!(unsafe { llmgw_mi_trim_thread() }, 0, "nothing left to give");
            check_live_and_new_burst(&live, 50_000);
        })
        .join()
        .unwrap();
    }

    /// The trim while another thread frees blocks of the trimmed pages (those frees go onto
    /// the pages' `xthread_free`, which the trim leaves alone): each round, the owner allocates
    /// a burst, hands most of it to a second thread that frees it block by block, and collects
    /// and trims in a loop meanwhile. Afterwards its long-lived blocks keep their bytes and a
    /// new burst gets distinct blocks that keep theirs.
    #[test]
    fn trim_is_safe_while_another_thread_frees_into_the_pages() {
        std::thread::spawn(|| {
            let live: Vec<Block> = (0..64).map(block).collect();
            let (to_freer, inbox) = std::sync::mpsc::channel::<Vec<Block>>();
            let (done, finished) = std::sync::mpsc::channel::<()>();
            let freer = std::thread::spawn(move || {
                for burst in inbox {
                    for b in burst {
                        drop(b);
                    }
                    done.send(()).unwrap();
                }
            });
            let mut trimmed = 0;
            for round in 0..20u64 {
                let burst: Vec<Block> = (0..20_000).map(|i| block(round * 100_000 + i)).collect();
                to_freer.send(burst).unwrap();
                loop {
                    unsafe { mi_collect(true) };
                    trimmed += unsafe { llmgw_mi_trim_thread() };
                    if finished.try_recv().is_ok() {
                        break;
                    }
                }
                for (i, b) in live.iter().enumerate() {
                    assert_eq!(**b, [i as u64; 6], "live block {i} after round {round}");
                }
            }
            drop(to_freer);
            freer.join().unwrap();
            unsafe { mi_collect(true) };
            trimmed += unsafe { llmgw_mi_trim_thread() };
            assert!(trimmed >= 32 * 1024, "gave back {trimmed} bytes in all");
            check_live_and_new_burst(&live, 7_000_000);
        })
        .join()
        .unwrap();
    }
}

/// The system allocator's build (`--cfg system_alloc`, for heap profilers) releases nothing.
#[cfg(system_alloc)]
fn release_memory() {}

#[derive(Parser)]
#[command(name = "llm-gateway", version, about = "An LLM gateway on Pingora")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the data and admin listeners (the default command).
    Run {
        #[arg(short, long, default_value = "conf/gateway.yaml")]
        config: PathBuf,
        /// Worker threads for the data plane (default: number of CPUs).
        #[arg(long)]
        threads: Option<usize>,
        /// Take the listening sockets over from the running gateway (sent on its SIGQUIT);
        /// `llm-gateway upgrade` does the whole exchange.
        #[arg(short, long)]
        upgrade: bool,
    },
    /// Zero-downtime upgrade: start this binary with `run --upgrade`, hand it the listening
    /// sockets of the running gateway (SIGQUIT), and return once it serves. The old process
    /// finishes its requests and streams (up to `limits.shutdown_grace_s`) and exits 0.
    Upgrade {
        #[arg(short, long, default_value = "conf/gateway.yaml")]
        config: PathBuf,
        /// The running gateway (default: `{state_dir}/llm-gateway.pid`).
        #[arg(long)]
        pid: Option<u32>,
        /// Worker threads for the new process.
        #[arg(long)]
        threads: Option<usize>,
        /// How long the new process may take to serve.
        #[arg(long, default_value_t = 30)]
        timeout_s: u64,
    },
    /// Validate a config file: prints every error with its YAML path (exit 64 if any), then
    /// every field that is accepted but not enforced yet; exit 0 if valid.
    Check {
        #[arg(short, long, default_value = "conf/gateway.yaml")]
        config: PathBuf,
        /// Do not resolve `env:` and `enc:` secrets (check a config in CI without them).
        #[arg(long)]
        no_secrets: bool,
    },
    /// Print the stored form (`sha256:...`) of a plaintext virtual key.
    HashKey { key: String },
    /// Print `enc:...` for a provider secret, sealed with LLM_GATEWAY_MASTER_KEY (32 bytes, base64).
    Encrypt { secret: String },
    #[command(flatten)]
    Tools(llm_gateway::cli::Command),
}

fn main() -> ExitCode {
    // No transparent huge pages for this process: once load is over the kernel's khugepaged
    // folds the partly used 2 MiB ranges the allocator has given back into whole huge pages
    // again, so idle RSS climbs for minutes after a burst (measured: 2,000 streams, 151 -> 226
    // MiB over the next two idle minutes, 242 MiB of it in huge pages). mimalloc is built with
    // `no_thp`, so it no longer asks for them (it did, on its first arena, before this line
    // ran); this covers kernels set to THP `always`. Set before any thread starts; inherited by
    // the upgrade's new process.
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("could not disable transparent huge pages ({e}); memory may be returned more slowly");
    }
    // Pingora logs through the `log` crate. Cap its level so the many debug!/trace! calls on
    // Pingora's hot path stop at a static check instead of reaching the subscriber.
    let spec = std::env::var("LLM_GATEWAY_LOG").unwrap_or_else(|_| "info".into());
    let max = if spec.contains("trace") {
        log::LevelFilter::Trace
    } else if spec.contains("debug") {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    let _ = tracing_log::LogTracer::builder().with_max_level(max).init();
    // Every log line is redacted on its way out (keys, `?key=`, credential headers).
    // JSON lines wherever the output is read by machines (journald, a file, a collector);
    // text on a terminal. `LLM_GATEWAY_LOG_FORMAT=json|text` overrides.
    let json = match std::env::var("LLM_GATEWAY_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    if let Err(e) = llm_gateway::telemetry::init_logging(&spec, json) {
        eprintln!("llm-gateway: {e}; logging at info");
        let _ = llm_gateway::telemetry::init_logging("info", json);
    }

    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run {
        config: "conf/gateway.yaml".into(),
        threads: None,
        upgrade: false,
    }) {
        Command::Run { config, threads, upgrade } => {
            let store = match RuntimeStore::open(&config) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    for line in e.0 {
                        eprintln!("invalid configuration: {}: {line}", config.display());
                    }
                    return ExitCode::from(EX_CONFIG);
                }
            };
            let threads =
                threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
            if let Err(e) = llm_gateway::server::run(store, threads, upgrade, Some(release_memory)) {
                eprintln!("llm-gateway: {e}");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Command::Upgrade { config, pid, threads, timeout_s } => {
            // The new process must be able to start: refuse a broken config before anything.
            let snap = match std::fs::read_to_string(&config)
                .map_err(|e| format!("cannot read: {e}"))
                .and_then(|t| {
                    config::parse(&t)
                        .and_then(|c| config::build_with(c, Secrets::Resolve))
                        .map_err(|e| e.to_string())
                }) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("invalid configuration: {}: {e}; nothing was changed", config.display());
                    return ExitCode::from(EX_CONFIG);
                }
            };
            let exe = match std::env::current_exe() {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("llm-gateway upgrade: cannot find this binary: {e}");
                    return ExitCode::from(1);
                }
            };
            let state_dir = PathBuf::from(&snap.state_dir);
            let within = std::time::Duration::from_secs(timeout_s);
            match llm_gateway::server::upgrade::upgrade(&exe, &config, &state_dir, pid, threads, within) {
                Ok(new) => {
                    eprintln!("llm-gateway upgrade: process {new} serves; the old one drains and exits");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("llm-gateway upgrade: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Check { config, no_secrets } => {
            let text = match std::fs::read_to_string(&config) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("invalid configuration: {}: cannot read: {e}", config.display());
                    return ExitCode::from(EX_CONFIG);
                }
            };
            let secrets = if no_secrets { Secrets::Skip } else { Secrets::Resolve };
            let built = config::parse(&text).and_then(|c| config::build_with(c, secrets)).and_then(|s| {
                if !no_secrets {
                    llm_gateway::runtime::jwt_verifier(&s.config)?;
                }
                Ok(s)
            });
            match built {
                Ok(s) => {
                    for w in unenforced_fields(&s.config) {
                        println!("{}: warning: {w}", config.display());
                    }
                    println!(
                        "{}: ok ({} providers, {} models, {} keys)",
                        config.display(),
                        s.providers.len(),
                        s.aliases.len(),
                        s.keys.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(errs) => {
                    for e in &errs.0 {
                        println!("invalid configuration: {}: {e}", config.display());
                    }
                    println!("{} error(s)", errs.0.len());
                    ExitCode::from(EX_CONFIG)
                }
            }
        }
        Command::HashKey { key } => {
            println!("{}", llm_gateway::auth::stored_form(&key));
            ExitCode::SUCCESS
        }
        Command::Encrypt { secret } => {
            let key = std::env::var("LLM_GATEWAY_MASTER_KEY")
                .map_err(|_| "LLM_GATEWAY_MASTER_KEY is not set".to_string());
            match key.and_then(|k| MasterKey::from_base64(&k)) {
                Ok(k) => {
                    println!("{}", k.encrypt(&secret));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("llm-gateway encrypt: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Tools(cmd) => llm_gateway::cli::main(cmd),
    }
}
