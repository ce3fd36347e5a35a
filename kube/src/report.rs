//! Errors as one line a user reads once: the outermost message, then each cause in the chain
//! that it does not already say. Many errors (Herald's own that name their cause, and most
//! libraries') print their cause in their message and return it as `source()` too; printing the
//! chain naively says everything twice (`vip[0].address = ...: ...: vip[0].address = ...: ...`).

use std::{error::Error, fmt};

/// Displays an error and its causes, `: `-separated, skipping each cause whose text is already
/// in what came before. For both binaries' fatal errors and for logged ones.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut said = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(e) = cause {
            let text = e.to_string();
            if !text.is_empty() && !said.contains(&text) {
                said.push_str(": ");
                said.push_str(&text);
            }
            cause = e.source();
        }
        f.write_str(&said)
    }
}

/// [`Chain`] for an [`anyhow::Error`].
pub fn chain(e: &anyhow::Error) -> Chain<'_> {
    Chain(e.as_ref())
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("vip[0].address = \"10.0.0.300\": not an IPv4 address")]
    struct Field;

    #[derive(Debug, thiserror::Error)]
    #[error("config file /etc/herald/herald.toml: {source}")]
    struct Invalid {
        source: Field,
    }

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let e = anyhow::Error::new(Invalid { source: Field });
        assert_eq!(
            chain(&e).to_string(),
            "config file /etc/herald/herald.toml: vip[0].address = \"10.0.0.300\": not an IPv4 address"
        );
    }

    #[test]
    fn causes_not_yet_said_follow_in_order() {
        let io = std::io::Error::from_raw_os_error(1);
        let e = Err::<(), _>(io).context("`bpf_prog_load` failed").context("loading herald_xdp").unwrap_err();
        assert_eq!(
            chain(&e).to_string(),
            "loading herald_xdp: `bpf_prog_load` failed: Operation not permitted (os error 1)"
        );
    }
}
