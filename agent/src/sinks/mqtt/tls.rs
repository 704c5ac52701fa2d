//! rustls client configuration for `mqtts://`: the broker's CA (or the system's roots)
//! and, for mutual TLS, this gateway's certificate and key. The ring provider is used
//! (no C toolchain for aws-lc needed on the gateway build).

use super::MqttSinkError;
use rumqttc::tokio_rustls::rustls;
use std::path::Path;
use std::sync::Arc;

fn read(path: &Path) -> Result<Vec<u8>, MqttSinkError> {
    std::fs::read(path)
        .map_err(|e| MqttSinkError::Tls(format!("cannot read {}: {e}", path.display())))
}

/// Builds the client configuration.
pub fn client_config(
    ca_file: Option<&Path>,
    cert_file: Option<&Path>,
    key_file: Option<&Path>,
) -> Result<rustls::ClientConfig, MqttSinkError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(ca) => {
            let pem = read(ca)?;
            let mut count = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert =
                    cert.map_err(|e| MqttSinkError::Tls(format!("{}: {e}", ca.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| MqttSinkError::Tls(format!("{}: {e}", ca.display())))?;
                count += 1;
            }
            if count == 0 {
                return Err(MqttSinkError::Tls(format!(
                    "{}: no PEM certificate in it",
                    ca.display()
                )));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(MqttSinkError::Tls(
                    "no system CA certificates found; set mqtt.ca_file".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttSinkError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match (cert_file, key_file) {
        (Some(cert), Some(key)) => {
            let chain = rustls_pemfile::certs(&mut read(cert)?.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| MqttSinkError::Tls(format!("{}: {e}", cert.display())))?;
            if chain.is_empty() {
                return Err(MqttSinkError::Tls(format!(
                    "{}: no PEM certificate in it",
                    cert.display()
                )));
            }
            let key_der = rustls_pemfile::private_key(&mut read(key)?.as_slice())
                .map_err(|e| MqttSinkError::Tls(format!("{}: {e}", key.display())))?
                .ok_or_else(|| {
                    MqttSinkError::Tls(format!("{}: no PEM private key in it", key.display()))
                })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| MqttSinkError::Tls(e.to_string()))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}
