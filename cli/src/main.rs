//! `gatewayctl`: see the library for the commands.

fn main() -> std::process::ExitCode {
    gatewayctl::run::main(std::env::args_os())
}
