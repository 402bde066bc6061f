//! Offices, directories and endpoints for the tests.

use std::net::SocketAddr;
use std::time::Duration;

use tongban_domain::ids::{OfficeId, Timestamp};
use tongban_domain::stage::Role;
use tongban_ledger::directory::{
    Directory, DirectoryAuthority, OfficeCertificate, Revocation, SignedCertificate,
};
use tongban_ledger::keys::OfficeKey;
use tongban_transport::{Connection, DirectoryHandle, Endpoint, EndpointConfig};

pub const DAY_MS: i64 = 24 * Timestamp::HOUR_MS;

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// An authority and the offices it may certify, each with a fresh key.
pub struct World {
    pub authority: DirectoryAuthority,
    serial: u64,
}

pub struct Office {
    pub id: OfficeId,
    pub key: OfficeKey,
}

impl World {
    pub fn new() -> World {
        World {
            authority: DirectoryAuthority::new(OfficeKey::generate().unwrap()),
            serial: 0,
        }
    }

    pub fn office(&self, id: &str) -> Office {
        Office {
            id: OfficeId::parse(id).unwrap(),
            key: OfficeKey::generate().unwrap(),
        }
    }

    /// A certificate valid from yesterday for a year.
    pub fn certify(&mut self, office: &Office) -> SignedCertificate {
        let now = Timestamp::now().millis();
        self.certify_window(
            office,
            Timestamp(now - DAY_MS),
            Timestamp(now + 365 * DAY_MS),
        )
    }

    pub fn certify_window(
        &mut self,
        office: &Office,
        not_before: Timestamp,
        not_after: Timestamp,
    ) -> SignedCertificate {
        self.serial += 1;
        self.authority
            .issue(OfficeCertificate {
                office: office.id.clone(),
                name: format!("测试办公室 {}", office.id),
                role: Role::Township,
                division: "440106001".to_string(),
                public_key: office.key.public(),
                not_before,
                not_after,
                serial: self.serial,
            })
            .unwrap()
    }

    /// A verified directory certifying `certified` and revoking `revoked` from a
    /// minute ago.
    pub fn directory(
        &mut self,
        version: u64,
        certified: &[&Office],
        revoked: &[&Office],
    ) -> Directory {
        let certificates = certified
            .iter()
            .map(|office| self.certify(office))
            .collect();
        let now = Timestamp::now().millis();
        let revocations = revoked
            .iter()
            .map(|office| {
                self.serial += 1;
                self.authority
                    .revoke(Revocation {
                        office: office.id.clone(),
                        public_key: office.key.public(),
                        effective: Timestamp(now - 60_000),
                        reason: "laptop lost".to_string(),
                        serial: self.serial,
                    })
                    .unwrap()
            })
            .collect();
        let signed = self
            .authority
            .publish(version, Timestamp(now), certificates, revocations);
        Directory::verify(&signed.encode(), &self.authority.public()).unwrap()
    }
}

/// Short timeouts so failing connects fail fast in tests.
pub fn test_config() -> EndpointConfig {
    let mut config = EndpointConfig::default();
    config.connect_timeout = Duration::from_secs(10);
    config
}

pub fn endpoint(office: &Office, directory: &DirectoryHandle) -> Endpoint {
    endpoint_with(office, directory, test_config())
}

pub fn endpoint_with(
    office: &Office,
    directory: &DirectoryHandle,
    config: EndpointConfig,
) -> Endpoint {
    Endpoint::bind(loopback(), &office.key, directory.clone(), config).unwrap()
}

/// Accepts connections and echoes every frame of every stream back, then finishes
/// the stream. Runs until the endpoint closes.
pub fn spawn_echo(endpoint: std::sync::Arc<Endpoint>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(connection) = endpoint.accept().await {
            tokio::spawn(echo_connection(connection));
        }
    })
}

async fn echo_connection(connection: Connection) {
    while let Ok((mut send, mut recv)) = connection.accept_stream().await {
        tokio::spawn(async move {
            while let Ok(Some(frame)) = recv.recv_frame().await {
                if send.send_frame(&frame).await.is_err() {
                    return;
                }
            }
            let _ = send.finish();
        });
    }
}

/// Deterministic bytes of a given length.
pub fn payload(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ ((i >> 8) as u8))
        .collect()
}

/// Nothing is accepted within `wait`.
pub async fn assert_nothing_accepted(endpoint: &Endpoint, wait: Duration) {
    let accepted = tokio::time::timeout(wait, endpoint.accept()).await;
    assert!(
        accepted.is_err(),
        "an application connection was accepted: {accepted:?}"
    );
}
