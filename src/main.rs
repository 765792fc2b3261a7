//! `xfer`: the command-line front end. Parsing and printing only; the work is in the library.

mod cli;

fn main() {
    cli::die_quietly_on_closed_pipe();
    std::process::exit(cli::main());
}
