//! Certificates and keys for both modes. External mode: the rustls client configuration
//! (ring provider: no C toolchain for aws-lc). Embedded mode: rumqttd builds its own
//! rustls server from PEM *files*, and only when a client connects, so the PEMs are
//! parsed here first to report a bad certificate at start-up rather than per connection.

use super::BrokerError;
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The certificates in a PEM document, in order; `what` names it in errors.
pub(crate) fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, BrokerError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BrokerError::Tls(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(BrokerError::Tls(format!(
            "{what}: no PEM certificate in it"
        )));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM document.
pub(crate) fn private_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, BrokerError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| BrokerError::Tls(format!("{what}: {e}")))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Checks what the embedded TLS listener will be given: the certificate chain matches
/// the key, and the client CA is a usable trust anchor. Returns how many certificates
/// the CA document holds (rumqttd trusts only the first).
pub(crate) fn check_server_pems(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: &[u8],
) -> Result<usize, BrokerError> {
    let chain = certs(cert_chain_pem, "tls server certificate")?;
    let key = private_key(key_pem, "tls server key")?;
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| BrokerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| BrokerError::Tls(format!("tls server certificate and key: {e}")))?;
    let cas = certs(client_ca_pem, "tls client ca")?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(cas[0].clone())
        .map_err(|e| BrokerError::Tls(format!("tls client ca: {e}")))?;
    Ok(cas.len())
}

/// The TLS listener's server configuration when the hub terminates TLS itself (the
/// authorisation front): this chain and key, and a client certificate required, signed
/// by any certificate of `client_ca_pem`.
pub(crate) fn mutual_tls_server_config(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: &[u8],
) -> Result<rustls::ServerConfig, BrokerError> {
    let chain = certs(cert_chain_pem, "tls server certificate")?;
    let key = private_key(key_pem, "tls server key")?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs(client_ca_pem, "tls client ca")? {
        roots
            .add(ca)
            .map_err(|e| BrokerError::Tls(format!("tls client ca: {e}")))?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| BrokerError::Tls(format!("tls client ca: {e}")))?;
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| BrokerError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| BrokerError::Tls(format!("tls server certificate and key: {e}")))
}

/// The client configuration for `mqtts://`: trust `ca_pem` (all certificates in it) and,
/// for mutual TLS, present `client_cert_pem` with `client_key_pem`.
pub(crate) fn client_config(
    ca_pem: &[u8],
    client_cert_pem: Option<&[u8]>,
    client_key_pem: Option<&[u8]>,
) -> Result<rustls::ClientConfig, BrokerError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(ca_pem, "broker ca")? {
        roots
            .add(cert)
            .map_err(|e| BrokerError::Tls(format!("broker ca: {e}")))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| BrokerError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match (client_cert_pem, client_key_pem) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(
                certs(cert, "client certificate")?,
                private_key(key, "client key")?,
            )
            .map_err(|e| BrokerError::Tls(format!("client certificate and key: {e}"))),
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(BrokerError::Tls(
            "a client certificate needs its key and a key its certificate".into(),
        )),
    }
}
