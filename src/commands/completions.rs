//! `orderdeck completions SHELL`: the shell's completion script on stdout.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};

pub fn completions(args: &CompletionsArgs) {
    let mut command = <Cli as CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "orderdeck", &mut script);
    // A reader that stops early (`| head`) is not an error worth a word.
    let _ = std::io::stdout().lock().write_all(&script);
}
