//! Password hashing with argon2id at OWASP's recommended parameters.
//!
//! Hashing is deliberately slow, so it runs on the blocking pool behind a
//! semaphore sized to the cores: a burst of logins queues here instead of
//! starving the async runtime.

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OnceCell, Semaphore};

use tollgate_core::error::{AppError, AppResult};

/// OWASP (2024): argon2id, m = 19 MiB, t = 2, p = 1.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

/// Hashes and verifies passwords off the async runtime.
#[derive(Clone, Debug)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when an email has no
    /// account so unknown emails take as long as known ones.
    dummy: Arc<OnceCell<String>>,
}

impl Default for PasswordHasher {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(2);
        Self {
            permits: Arc::new(Semaphore::new(cores)),
            dummy: Arc::new(OnceCell::new()),
        }
    }
}

fn argon2() -> AppResult<Argon2<'static>> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|e| AppError::internal(anyhow::anyhow!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

impl PasswordHasher {
    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) with a fresh salt.
    pub async fn hash(&self, password: SecretString) -> AppResult<String> {
        self.run(move || {
            let hash = argon2()?
                .hash_password(password.expose_secret().as_bytes())
                .map_err(|e| AppError::internal(anyhow::anyhow!("hashing a password: {e}")))?;
            Ok(hash.to_string())
        })
        .await
    }

    /// Whether `password` matches `phc`. A malformed stored hash is an
    /// internal error, not a wrong password.
    pub async fn verify(&self, password: SecretString, phc: String) -> AppResult<bool> {
        self.run(
            move || match argon2()?.verify_password(password.expose_secret().as_bytes(), phc.as_str()) {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
                Err(e) => Err(AppError::internal(anyhow::anyhow!("verifying a password: {e}"))),
            },
        )
        .await
    }

    /// Checks `password` against an account's stored hash; with no hash
    /// (no account, or no password) it spends the same time and says no,
    /// so the answer's timing reveals nothing.
    pub async fn verify_stored(&self, password: SecretString, stored: Option<String>) -> AppResult<bool> {
        match stored {
            Some(hash) => self.verify(password, hash).await,
            None => self.verify_nothing(password).await,
        }
    }

    /// Computes the dummy hash ahead of the first unknown-email sign-in, so
    /// even that one takes no longer than a real one.
    pub async fn prime(&self) {
        if let Err(e) = self.verify_nothing(SecretString::from("prime")).await {
            tracing::warn!(error = ?e, "could not prepare the dummy password hash");
        }
    }

    /// Spends the time of a real verification and returns false: for
    /// sign-ins to emails that have no account.
    pub async fn verify_nothing(&self, password: SecretString) -> AppResult<bool> {
        let dummy = self
            .dummy
            .get_or_try_init(|| async {
                let mut random = [0u8; 16];
                rand::RngCore::fill_bytes(&mut rand::rng(), &mut random);
                self.hash(SecretString::from(hex::encode(random))).await
            })
            .await?
            .clone();
        self.verify(password, dummy).await?;
        Ok(false)
    }

    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> AppResult<T> + Send + 'static) -> AppResult<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| AppError::internal(anyhow::anyhow!("password semaphore closed: {e}")))?;
        tokio::task::spawn_blocking(job).await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_salts_differ() {
        let hasher = PasswordHasher::default();
        let a = hasher.hash("correct horse battery".into()).await.unwrap();
        let b = hasher.hash("correct horse battery".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b);
        assert!(hasher.verify("correct horse battery".into(), a.clone()).await.unwrap());
        assert!(!hasher.verify("wrong horse".into(), a).await.unwrap());
    }
}
