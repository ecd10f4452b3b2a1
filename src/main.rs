//! The `nulab-pass` binary: see `nulab_pass::cli`.

/// mimalloc rather than the C library's allocator, whose malloc and free were most of the C
/// library's 14.5% of the server's CPU samples under load: on two cores sign-ins ran 3% faster
/// with it alone and 20% faster with it and the SAML work in place (`saml::cpu`; README
/// "Performance"). With the crate's `override` feature (`Cargo.toml`) it is also the C
/// libraries' malloc and free (libxml2, xmlsec, OpenSSL, SQLite): the binary exports them and the
/// dynamic linker binds the libraries' calls to them, a sign-in 8% fewer instructions.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    nulab_pass::cli::main()
}
