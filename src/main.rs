//! The `kms-envelope` command-line tool. See `kms-envelope --help` and the README.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
