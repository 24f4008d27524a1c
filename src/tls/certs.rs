//! Certificate chains and private keys loaded from PEM files, and the resolver that picks one
//! per handshake: by SNI against each certificate's subjectAltName names, else the first pair.
//! A reload (SIGHUP) swaps the whole set at once; handshakes that already chose keep theirs.
//! Nothing here reads a file after start-up except `load`, called by the supervisor.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Where one certificate chain and its key are read from (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A pair that cannot be used, naming the file at fault.
#[derive(Debug)]
pub struct LoadError {
    pub path: PathBuf,
    pub why: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.why)
    }
}

impl std::error::Error for LoadError {}

/// The loaded pairs, the first being the default.
pub struct CertSet {
    pairs: Vec<Arc<CertifiedKey>>,
}

impl CertSet {
    /// Reads and checks every pair: each file readable PEM, the chain non-empty, the key one
    /// the provider can sign with and the one the certificate names.
    pub fn load(paths: &[PairPaths], provider: &CryptoProvider) -> Result<CertSet, LoadError> {
        let pairs = paths.iter().map(|p| load_pair(p, provider).map(Arc::new)).collect::<Result<_, _>>()?;
        Ok(CertSet { pairs })
    }

    /// The pair for `server_name`: the first whose certificate is valid for that name, else
    /// the default.
    fn choose(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let default = self.pairs.first()?;
        let Some(name) = server_name.and_then(|n| ServerName::try_from(n).ok()) else {
            return Some(default.clone());
        };
        self.pairs.iter().find(|pair| valid_for(pair, &name)).or(Some(default)).cloned()
    }
}

fn valid_for(pair: &CertifiedKey, name: &ServerName<'_>) -> bool {
    let Some(end_entity) = pair.cert.first() else { return false };
    webpki::EndEntityCert::try_from(end_entity)
        .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(name).is_ok())
}

fn load_pair(paths: &PairPaths, provider: &CryptoProvider) -> Result<CertifiedKey, LoadError> {
    let fail = |path: &Path, why: String| LoadError { path: path.to_owned(), why };
    let pem = read(&paths.cert)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(&paths.cert, format!("not a PEM certificate chain ({e})")))?;
    if chain.is_empty() {
        return Err(fail(&paths.cert, "no certificate in the file".into()));
    }
    webpki::EndEntityCert::try_from(&chain[0])
        .map_err(|e| fail(&paths.cert, format!("the first certificate cannot be parsed ({e})")))?;
    let pem = read(&paths.key)?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| fail(&paths.key, format!("not a PEM private key ({e})")))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| fail(&paths.key, format!("unusable private key ({e})")))?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match().map_err(|_| {
        fail(&paths.key, format!("this key does not belong to the certificate in {}", paths.cert.display()))
    })?;
    Ok(pair)
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|e| LoadError { path: path.to_owned(), why: e.to_string() })
}

/// Picks a pair for each handshake from the current set, which a reload replaces.
#[derive(Debug)]
pub struct Resolver {
    current: RwLock<Arc<CertSet>>,
}

impl fmt::Debug for CertSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertSet({} pairs)", self.pairs.len())
    }
}

impl Resolver {
    pub fn new(set: CertSet) -> Resolver {
        Resolver { current: RwLock::new(Arc::new(set)) }
    }

    /// New handshakes use `set` from now on.
    pub fn replace(&self, set: CertSet) {
        let mut current = self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = Arc::new(set);
    }

    fn current(&self) -> Arc<CertSet> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current().choose(hello.server_name())
    }
}
