//! The speakers' membership key: a Secret the controller creates, with a random key, when it
//! does not exist, so that `kubectl apply -k deploy/` needs no key from the user and none is
//! ever committed. An existing Secret (one a user made, or MetalLB's) is left as it is.

use std::io::Read as _;

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tracing::info;

/// The key in the Secret's data, as MetalLB's memberlist Secret has it.
pub const KEY: &str = "secretkey";

/// Creates Secret `name` in `namespace` with a fresh 256-bit key, unless it exists. Another
/// replica creating it at the same time is fine: the first one wins.
pub async fn ensure(client: &Client, namespace: &str, name: &str) -> anyhow::Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if api.get_opt(name).await?.is_some() {
        return Ok(());
    }
    let secret = Secret {
        metadata: ObjectMeta { name: Some(name.to_owned()), ..Default::default() },
        data: Some([(KEY.to_owned(), ByteString(random_key()?.into_bytes()))].into()),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            info!(secret = name, "membership key created");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// 32 bytes from the kernel's CSPRNG, as 64 hex digits.
fn random_key() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_random_and_long_enough() {
        let (a, b) = (super::random_key().unwrap(), super::random_key().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
