//! The `nulab-pass` binary: see `nulab_pass::cli`.

fn main() -> std::process::ExitCode {
    nulab_pass::cli::main()
}
