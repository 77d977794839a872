//! `keelson-builtin <name> [args...]`: runs one built-in image, as
//! `keelson builtin` does, from a binary a fraction of keelson's size (no
//! RocksDB, gRPC or CLI), so pods of built-in images start fast.

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(name) = args.next() else {
        eprintln!(
            "usage: keelson-builtin <name> [args...]; the builtin images are {}",
            keelson_builtin::NAMES.join(", ")
        );
        std::process::exit(2);
    };
    let rest: Vec<String> = args.collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("keelson-builtin: cannot start a runtime: {e}");
            std::process::exit(1);
        }
    };
    std::process::exit(runtime.block_on(keelson_builtin::run(&name, &rest)));
}
