//! The TLS settings every HTTPS connection shares: TLS 1.3 and 1.2 only, AEAD cipher suites
//! only (within Mozilla's "intermediate" profile), ALPN `http/1.1`, resumption by session
//! tickets (keys rotated) and a session cache, no 0-RTT, no renegotiation (rustls has none),
//! and traffic secrets that may be extracted for the kernel.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::ResolvesServerCert;

use super::certs::{CertSet, LoadError, PairPaths, Resolver};

/// What ALPN offers; `h2` would be added in front of it.
const ALPN: &[&[u8]] = &[b"http/1.1"];
/// TLS 1.3 tickets sent after a handshake: one is enough for the next connection, and each
/// costs an encryption and a record.
const TLS13_TICKETS: usize = 1;
/// Sessions kept for resumption by session ID (TLS 1.2 clients without ticket support).
const SESSION_CACHE: usize = 4096;

/// The shared configuration and the resolver a reload swaps certificates in.
pub struct Tls {
    pub config: Arc<ServerConfig>,
    pub resolver: Arc<Resolver>,
    pub pairs: Vec<PairPaths>,
    provider: Arc<CryptoProvider>,
}

/// The crypto provider: ring, whose AEAD suites (AES-GCM, ChaCha20-Poly1305) and key exchange
/// groups (X25519, P-256, P-384) all lie within the intermediate profile. The suites in the
/// profile's order, which the server applies (`ignore_client_order`): AES-128-GCM first, which
/// every kernel's TLS module takes too.
pub(crate) fn provider() -> CryptoProvider {
    use rustls::crypto::ring::cipher_suite as suite;
    CryptoProvider {
        cipher_suites: vec![
            suite::TLS13_AES_128_GCM_SHA256,
            suite::TLS13_AES_256_GCM_SHA384,
            suite::TLS13_CHACHA20_POLY1305_SHA256,
            suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::ring::default_provider()
    }
}

/// Every setting but the certificates, which `resolver` picks per handshake.
pub(crate) fn server_config(
    provider: Arc<CryptoProvider>,
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<ServerConfig, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE);
    config.send_tls13_tickets = TLS13_TICKETS;
    config.max_early_data_size = 0;
    // A cipher order of the server's (testssl.sh and the like flag its absence), in the
    // profile's order.
    config.ignore_client_order = true;
    config.enable_secret_extraction = true;
    Ok(config)
}

impl Tls {
    /// Loads the pairs and builds the configuration; an error names the file at fault.
    pub fn new(pairs: Vec<PairPaths>) -> Result<Tls, LoadError> {
        let provider = Arc::new(provider());
        let set = CertSet::load(&pairs, &provider)?;
        let resolver = Arc::new(Resolver::new(set));
        let config = server_config(provider.clone(), resolver.clone())
            .map_err(|e| LoadError { path: pairs[0].cert.clone(), why: e.to_string() })?;
        Ok(Tls { config: Arc::new(config), resolver, pairs, provider })
    }

    /// Reads the pairs again (SIGHUP): new handshakes get them; on an error the old ones stay.
    pub fn reload(&self) -> Result<(), LoadError> {
        let set = CertSet::load(&self.pairs, &self.provider)?;
        self.resolver.replace(set);
        Ok(())
    }
}
