//! `sftpctl welcome NAME`: mails a client how to connect (built by [`crate::welcome`]); also
//! what `add-user --welcome` runs once the account is made.

use anyhow::Result;

use crate::accounts::require_managed;
use crate::cli::WelcomeArgs;
use crate::commands::key;
use crate::config::Config;
use crate::error::{require_root, usage};
use crate::keys::PublicKey;
use crate::letters;
use crate::registry;
use crate::welcome::{self, Server, Templates};

pub fn run(config: &Config, args: &WelcomeArgs) -> Result<()> {
    require_root("sftpctl welcome")?;
    let name = args.name.as_str();
    require_managed(config, name)?;
    let address = address(config, name, None)?;
    let ready = Ready::new(config)?;
    let keys = key::current(config, name)?;
    if args.dry_run {
        return ready.print_dry_run(config, name, &address, &keys, "welcome --dry-run");
    }
    ready.send(config, name, &address, &keys)
}

/// The address the welcome goes to: `given` (add-user's `--email`), else the stored one or
/// `mail.users`; none (or one that is no address) is bad input (exit 2).
pub(crate) fn address(config: &Config, name: &str, given: Option<&str>) -> Result<String> {
    let Some(address) = given
        .map(str::to_string)
        .or_else(|| registry::email_of(config, name))
    else {
        return Err(usage(format!(
            "{name} has no mail address to send the welcome to: give --email ADDR to add-user, or `sftpctl set {name} email=ADDR` first"
        )));
    };
    registry::check_email(&address).map_err(|e| {
        usage(format!(
            "the mail address of {name}: {e:#}; fix it with `sftpctl set {name} email=ADDR`"
        ))
    })?;
    Ok(address)
}

/// What every welcome needs and can fail on, found before anything is changed: sshd's port
/// and host keys, this host's name, the templates.
pub(crate) struct Ready {
    server: Server,
    templates: Templates,
}

impl Ready {
    pub(crate) fn new(config: &Config) -> Result<Ready> {
        Ok(Ready {
            templates: Templates::load(config.watch.template_dir.as_deref())?,
            server: welcome::server(config)?,
        })
    }

    pub(crate) fn print_dry_run(
        &self,
        config: &Config,
        name: &str,
        address: &str,
        keys: &[PublicKey],
        command: &str,
    ) -> Result<()> {
        let mail = self.templates.render(config, name, &self.server, keys)?;
        println!("sftpctl {command}: would mail {address} this welcome (nothing is sent):");
        println!("Subject: {}\n", mail.subject);
        print!("{}", mail.text);
        Ok(())
    }

    /// Queues the welcome and delivers it now. Exit 1 when the transport fails: the letter
    /// stays queued and the watcher's delivery thread retries it.
    pub(crate) fn send(
        &self,
        config: &Config,
        name: &str,
        address: &str,
        keys: &[PublicKey],
    ) -> Result<()> {
        // A welcome an earlier run could not deliver goes out instead of a second one.
        let earlier = letters::pending(config)?
            .into_iter()
            .find(|l| l.kind == "welcome" && l.user == name);
        let id = match earlier {
            Some(letter) => {
                println!(
                    "sftpctl: a welcome mail to {name} from an earlier run is still queued ({}): it is sent instead of a second one",
                    letter.id
                );
                letter.id
            }
            None => {
                let mail = self.templates.render(config, name, &self.server, keys)?;
                let letter = welcome::letter(name, mail);
                letters::queue(config, &letter)?;
                letter.id
            }
        };
        if let Err(e) = letters::deliver_pending(config) {
            anyhow::bail!(
                "the welcome mail to {name} <{address}> is queued, not delivered now: {e:#}; the watcher (sftpctl watch) retries it, nothing else to do"
            );
        }
        anyhow::ensure!(
            letters::was_sent(&letters::dir(config), &id),
            "the welcome mail to {name} <{address}> is still queued ({id}); the watcher (sftpctl watch) delivers it"
        );
        println!(
            "sftpctl: welcome mail to {name} <{address}> sent (host {}, port {})",
            self.server.host, self.server.port
        );
        Ok(())
    }
}
