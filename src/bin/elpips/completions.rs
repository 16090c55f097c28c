//! Shell completions and man pages, generated from the command line's own clap definition so
//! that they say what `--help` says. `make install` writes both (bash, zsh and fish completions
//! under `share/`, the pages under `share/man/man1`).

use std::path::PathBuf;

use clap::{Args, CommandFactory};
use elpips::Error;

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for (e.g. `source <(elpips completions bash)`).
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// Folder to write elpips.1 and one page per subcommand (elpips-compare.1, ...) into.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn completions(args: CompletionsArgs) -> Result<(), Error> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut crate::Cli::command(), "elpips", &mut out);
    use std::io::Write;
    std::io::stdout().write_all(&out).map_err(|e| Error::Io { path: "<stdout>".into(), reason: e.to_string() })
}

pub fn man(args: ManArgs) -> Result<(), Error> {
    std::fs::create_dir_all(&args.out).map_err(|e| Error::Io { path: args.out.clone(), reason: e.to_string() })?;
    let mut cmd = crate::Cli::command().disable_help_subcommand(true);
    cmd.build();
    write_pages(&cmd, &args.out)
}

/// The page of `cmd` and those of its visible subcommands.
fn write_pages(cmd: &clap::Command, dir: &std::path::Path) -> Result<(), Error> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir)?;
    }
    let man = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    let path = dir.join(man.get_filename());
    man.render(&mut page).map_err(|e| Error::Io { path: path.clone(), reason: e.to_string() })?;
    elpips::io::write_atomic(&path, &page)
}
