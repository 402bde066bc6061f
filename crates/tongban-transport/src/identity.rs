//! The TLS identity of a node (a self-signed certificate over its office key) and
//! the verifiers that bind a peer's certificate to the directory.

use std::sync::{Arc, Mutex, PoisonError};

use rustls::DigitallySignedStruct;
use rustls::SignatureScheme;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use thiserror::Error;
use tongban_domain::ids::Timestamp;
use tongban_ledger::keys::{OfficeKey, PublicKey};

use crate::ALPN;
use crate::directory::{DirectoryHandle, PeerRejection};

/// The TLS server name every client sends. Peers are identified by key, never by
/// name, so the name is a constant that only has to be a valid DNS name.
pub(crate) const SERVER_NAME: &str = "tongban.peer";

/// The DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410):
/// `SEQUENCE(42) { SEQUENCE(5) { OID 1.3.101.112 }, BIT STRING(33) { 0 unused bits,`
/// followed by the 32 key bytes. An ed25519 SPKI has no parameters and no
/// alternative encoding in DER, so comparing bytes is an exact parse.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why the node's own identity could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// rcgen refused the key or the certificate parameters.
    #[error("cannot make the self-signed certificate: {0}")]
    Certificate(String),
    /// rustls refused the key.
    #[error("rustls refused the office key: {0}")]
    Key(String),
}

/// A node's TLS identity: its office public key and a certificate over it with the
/// matching signing key, ready for rustls.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) public: PublicKey,
    certified: Arc<CertifiedKey>,
}

/// PKCS#8 v2 (RFC 5958 `OneAsymmetricKey`) for an ed25519 key, the form ring
/// produces: version 1, the algorithm, the secret as a nested OCTET STRING, and the
/// public key in `[1]`.
fn ed25519_pkcs8(secret: &[u8; 32], public: &[u8; 32]) -> Vec<u8> {
    let mut der = Vec::with_capacity(85);
    der.extend_from_slice(&[
        0x30, 0x53, // SEQUENCE, 83 bytes
        0x02, 0x01, 0x01, // INTEGER 1 (v2)
        0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, // AlgorithmIdentifier: ed25519
        0x04, 0x22, 0x04, 0x20, // OCTET STRING { OCTET STRING(32) }
    ]);
    der.extend_from_slice(secret);
    der.extend_from_slice(&[0xa1, 0x23, 0x03, 0x21, 0x00]); // [1] { BIT STRING(33) }
    der.extend_from_slice(public);
    der
}

impl Identity {
    /// The identity of the office holding `key`.
    pub(crate) fn new(
        key: &OfficeKey,
        provider: &CryptoProvider,
    ) -> Result<Identity, IdentityError> {
        let public = key.public();
        let mut secret = key.to_bytes();
        let pkcs8 = ed25519_pkcs8(&secret, public.as_bytes());
        secret.fill(0);
        let pkcs8 = PrivatePkcs8KeyDer::from(pkcs8);

        let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
            .map_err(|err| IdentityError::Certificate(err.to_string()))?;
        let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])
            .map_err(|err| IdentityError::Certificate(err.to_string()))?;
        let mut name = rcgen::DistinguishedName::new();
        // The fingerprint only helps a person reading a packet capture; nothing
        // checks it.
        name.push(
            rcgen::DnType::CommonName,
            format!("tongban office key {}", public.fingerprint()),
        );
        params.distinguished_name = name;
        let certificate = params
            .self_signed(&key_pair)
            .map_err(|err| IdentityError::Certificate(err.to_string()))?;
        let certificate = certificate.der().clone();

        let signing_key = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(pkcs8))
            .map_err(|err| IdentityError::Key(err.to_string()))?;
        let certified = CertifiedKey::new(vec![certificate.clone()], signing_key);
        certified
            .keys_match()
            .map_err(|err| IdentityError::Key(err.to_string()))?;
        // Our own certificate must carry exactly our office key, or every peer
        // would refuse us with a confusing reason.
        if peer_key_of(&certificate).ok() != Some(public) {
            return Err(IdentityError::Certificate(
                "the certificate does not carry the office key".to_string(),
            ));
        }
        Ok(Identity {
            public,
            certified: Arc::new(certified),
        })
    }
}

/// The ed25519 key an end-entity certificate carries.
///
/// webpki (already in the build through rustls) parses the certificate; we only
/// compare its SubjectPublicKeyInfo with the one fixed ed25519 encoding. This needs
/// no X.509 crate of our own and accepts nothing but a plain ed25519 key.
pub(crate) fn peer_key_of(certificate: &CertificateDer<'_>) -> Result<PublicKey, PeerRejection> {
    let parsed =
        ParsedCertificate::try_from(certificate).map_err(|err| PeerRejection::BadCertificate {
            reason: err.to_string(),
        })?;
    let spki = parsed.subject_public_key_info();
    let key = spki
        .as_ref()
        .strip_prefix(ED25519_SPKI_PREFIX.as_slice())
        .and_then(|rest| <[u8; 32]>::try_from(rest).ok())
        .ok_or(PeerRejection::NotEd25519)?;
    Ok(PublicKey(key))
}

/// The TLS error, and so the alert the peer receives, for a refusal. The
/// refused side cannot see our typed reason, so the alert carries the part it
/// needs to tell its operator what to do: a revoked key (`certificate_revoked`)
/// needs a new key, an unknown key (`unknown_ca`) a directory import on one side,
/// a key not valid now (`certificate_expired`) a renewed certificate.
fn alert_for(rejection: PeerRejection) -> rustls::CertificateError {
    match rejection {
        PeerRejection::Revoked { .. } => rustls::CertificateError::Revoked,
        PeerRejection::UnknownKey { .. } => rustls::CertificateError::UnknownIssuer,
        PeerRejection::NotValidNow { .. } => rustls::CertificateError::Expired,
        other => rustls::CertificateError::Other(rustls::OtherError(Arc::new(other))),
    }
}

/// Where a verifier records why it refused the peer, so the connecting side can
/// report a typed [`PeerRejection`] instead of a TLS alert.
pub(crate) type RejectionSlot = Arc<Mutex<Option<PeerRejection>>>;

/// The verifier both sides use: the peer's certificate must carry an ed25519 key
/// that the directory allows now, and the handshake signature must verify with it.
#[derive(Debug)]
pub(crate) struct DirectoryVerifier {
    directory: DirectoryHandle,
    algorithms: WebPkiSupportedAlgorithms,
    rejection: Option<RejectionSlot>,
}

impl DirectoryVerifier {
    pub(crate) fn new(
        directory: DirectoryHandle,
        provider: &CryptoProvider,
        rejection: Option<RejectionSlot>,
    ) -> DirectoryVerifier {
        DirectoryVerifier {
            directory,
            algorithms: provider.signature_verification_algorithms,
            rejection,
        }
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        let outcome = if intermediates.is_empty() {
            peer_key_of(end_entity)
                .and_then(|key| self.directory.check_key(&key, Timestamp::now()).map(|_| ()))
        } else {
            Err(PeerRejection::UnexpectedChain {
                count: intermediates.len() + 1,
            })
        };
        outcome.map_err(|rejection| {
            tracing::warn!(%rejection, "refusing a peer during the TLS handshake");
            if let Some(slot) = &self.rejection {
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(rejection.clone());
            }
            rustls::Error::InvalidCertificate(alert_for(rejection))
        })
    }

    fn verify_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only ed25519 is offered (see `supported_verify_schemes`), and the
        // certificate was checked to carry an ed25519 key, so this is ring's
        // ed25519 verification with the peer's directory key.
        if signature.scheme != SignatureScheme::ED25519 {
            return Err(rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
        }
        rustls::crypto::verify_tls13_signature(message, certificate, signature, &self.algorithms)
    }
}

impl ServerCertVerifier for DirectoryVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The server name is a constant (`SERVER_NAME`): the key is the identity.
        self.check(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _certificate: &CertificateDer<'_>,
        _signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // QUIC is TLS 1.3 only; the configs offer nothing else.
        Err(rustls::PeerIncompatible::Tls13RequiredForQuic.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for DirectoryVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _certificate: &CertificateDer<'_>,
        _signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::PeerIncompatible::Tls13RequiredForQuic.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The ring provider, installed explicitly in every config rather than taken
/// from the process default (which panics when two providers are compiled in).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls server side: TLS 1.3 only, mandatory client certificates checked
/// against the directory, no session tickets (a resumed session would skip the
/// certificate check), ALPN `tongban/1`.
pub(crate) fn server_tls(
    identity: &Identity,
    directory: DirectoryHandle,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let verifier = DirectoryVerifier::new(directory, &provider, None);
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(identity.certified.clone())));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    Ok(config)
}

/// The rustls client side: TLS 1.3 only, the server's certificate checked against
/// the directory, our certificate always sent, no resumption and no early data,
/// ALPN `tongban/1`. `rejection` receives the reason if the server is refused.
pub(crate) fn client_tls(
    identity: &Identity,
    directory: DirectoryHandle,
    provider: Arc<CryptoProvider>,
    rejection: RejectionSlot,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let verifier = DirectoryVerifier::new(directory, &provider, Some(rejection));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(identity.certified.clone())));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_early_data = false;
    Ok(config)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn certificate_carries_the_office_key() {
        let key = OfficeKey::from_bytes(&[9; 32]);
        let identity = Identity::new(&key, &provider()).unwrap();
        assert_eq!(identity.public, key.public());
        let certificate = identity.certified.end_entity_cert().unwrap();
        assert_eq!(peer_key_of(certificate).unwrap(), key.public());
    }

    #[test]
    fn garbage_and_foreign_keys_are_refused() {
        assert!(matches!(
            peer_key_of(&CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00])),
            Err(PeerRejection::BadCertificate { .. })
        ));
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let certificate = rcgen::CertificateParams::new(vec!["x".to_string()])
            .unwrap()
            .self_signed(&p256)
            .unwrap();
        assert_eq!(
            peer_key_of(certificate.der()),
            Err(PeerRejection::NotEd25519)
        );
    }
}
