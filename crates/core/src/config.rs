//! Typed configuration, read once from the environment (and `.env`) at start.
//!
//! Every variable of `shared/spec/operations.md` is parsed here, so a bad
//! value stops start-up with a message naming the variable instead of
//! surfacing later as a confusing runtime failure.

use std::{
    collections::HashMap,
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use ipnet::IpNet;

pub mod gateway;
pub mod oauth;
pub use gateway::GatewayConfig;
pub use oauth::OAuthConfig;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// A configuration value that could not be used; names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {variable}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    fn new(variable: &'static str, message: impl Into<String>) -> Self {
        Self {
            variable,
            message: message.into(),
        }
    }
}

/// Where the server runs; production tightens several defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    /// Local work: playground, introspection and detailed errors on.
    Development,
    /// Deployed: requires `JWT_SECRET`, hides developer conveniences.
    Production,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured lines.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Which browser origins may call the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Any origin (development default). Safe because credentials travel
    /// only in the Authorization header, never in cookies.
    Any,
    /// Exactly these origins (`scheme://host[:port]`).
    List(Vec<String>),
}

/// The server's configuration.
#[derive(Clone)]
pub struct Config {
    /// External PostgreSQL; `None` starts the embedded one in `data_dir`.
    pub database_url: Option<SecretString>,
    /// Connections each instance's request pool opens at most.
    pub database_pool_size: usize,
    /// Embedded database and development secrets live here.
    pub data_dir: PathBuf,
    /// Redis for cross-instance events, rate limits and revocation.
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key and channel, so several deployments (or
    /// parallel tests) can share one Redis.
    pub redis_key_prefix: String,
    /// Listen address.
    pub host: IpAddr,
    /// Listen port; 0 picks a free one.
    pub port: u16,
    /// The API's own public base URL.
    pub public_url: Url,
    /// The web app's base URL, for links in emails.
    pub app_url: Url,
    /// Development or production.
    pub app_env: AppEnv,
    /// HS256 key for access tokens; `None` in development means "generate
    /// one per data folder" (see the auth layer's `access_token`).
    pub jwt_secret: Option<SecretString>,
    /// Access token life.
    pub access_token_ttl: Duration,
    /// Refresh session life.
    pub refresh_token_ttl: Duration,
    /// SMTP server; `None` keeps emails in the outbox and the log.
    pub smtp_url: Option<SecretString>,
    /// Sender of every email.
    pub mail_from: String,
    /// Stripe API key; `None` turns billing off.
    pub stripe_secret_key: Option<SecretString>,
    /// Secret that signs Stripe webhooks.
    pub stripe_webhook_secret: Option<SecretString>,
    /// Base URL of the Stripe API (a local fake in tests).
    pub stripe_api_base: Url,
    /// How long a subscription whose payments fail keeps its plan.
    pub billing_grace_period: Duration,
    /// Allowed browser origins.
    pub cors_origins: CorsOrigins,
    /// Where device-login users type their code.
    pub device_verification_url: Url,
    /// Whether anyone may register, or only invited people.
    pub registration_open: bool,
    /// Auth attempts per client address, per action, per minute.
    pub auth_rate_limit_per_minute: u32,
    /// Wrong passwords within `lockout_window` that lock an email.
    pub lockout_threshold: u32,
    /// Lockout window and duration.
    pub lockout_window: Duration,
    /// Staff (SUPPORT, ADMIN) without TOTP are refused staff powers until
    /// they enroll.
    pub require_mfa_for_staff: bool,
    /// Maximum GraphQL query depth.
    pub graphql_max_depth: usize,
    /// Maximum GraphQL query cost.
    pub graphql_max_complexity: usize,
    /// SQL statements one query or subscription event may run.
    pub graphql_max_statements: u64,
    /// Bytes one query answer or subscription event may take.
    pub graphql_max_response_bytes: usize,
    /// Proxies whose X-Forwarded-For is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Serve `/playground`.
    pub playground: bool,
    /// Allow introspection queries.
    pub introspection: bool,
    /// Log line format.
    pub log_format: LogFormat,
    /// The LLM gateway: secrets key, providers from the environment, timeouts.
    pub gateway: GatewayConfig,
    /// Sign-in with identity providers (GitHub, Google, OIDC issuers).
    pub oauth: OAuthConfig,
}

impl fmt::Debug for Config {
    // Written by hand so that no secret (or URL with a password) reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field(
                "database_url",
                &self.database_url.as_ref().map(|u| redact_url(u.expose_secret())),
            )
            .field("data_dir", &self.data_dir)
            .field(
                "redis_url",
                &self.redis_url.as_ref().map(|u| redact_url(u.expose_secret())),
            )
            .field("host", &self.host)
            .field("port", &self.port)
            .field("public_url", &self.public_url.as_str())
            .field("app_url", &self.app_url.as_str())
            .field("app_env", &self.app_env)
            .field("registration_open", &self.registration_open)
            .field("require_mfa_for_staff", &self.require_mfa_for_staff)
            .field("billing_enabled", &self.stripe_secret_key.is_some())
            .field("smtp_configured", &self.smtp_url.is_some())
            .field("gateway", &self.gateway)
            .field("oauth_providers", &self.oauth.keys())
            .finish_non_exhaustive()
    }
}

/// Replaces the password of a URL with `***`, for logs.
pub fn redact_url(raw: &str) -> String {
    let Ok(mut url) = Url::parse(raw) else {
        return "<unparseable url>".to_owned();
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    // PostgreSQL and Redis URLs may carry the password as a parameter.
    let secret_param = |key: &str| ["password", "pass", "sslpassword"].contains(&key.to_ascii_lowercase().as_str());
    if url.query_pairs().any(|(key, _)| secret_param(&key)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret_param(&k) {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

impl Config {
    /// Reads `.env` (when present) and then the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        // A missing .env is normal; a malformed one is worth stopping for.
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(ConfigError::new(".env", e.to_string())),
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the configuration from explicit variables; used by tests.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_lookup(|name| vars.get(name).cloned())
    }

    /// Builds the configuration from any variable source.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(&lookup);

        let app_env = match vars.get("APP_ENV").as_deref() {
            None | Some("development") => AppEnv::Development,
            Some("production") => AppEnv::Production,
            Some(other) => {
                return Err(ConfigError::new(
                    "APP_ENV",
                    format!("expected development or production, got {other:?}"),
                ));
            }
        };
        let production = app_env == AppEnv::Production;

        let host: IpAddr = vars.parse("HOST")?.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let port: u16 = vars.parse("PORT")?.unwrap_or(8000);
        let public_url = match vars.url("PUBLIC_URL")? {
            Some(url) => url,
            None => Url::parse(&format!("http://{}/", socket_display(host, port)))
                .map_err(|e| ConfigError::new("PUBLIC_URL", e.to_string()))?,
        };
        let app_url = vars.url("APP_URL")?.unwrap_or_else(|| public_url.clone());
        let device_verification_url = match vars.url("DEVICE_VERIFICATION_URL")? {
            Some(url) => url,
            None => Url::parse(&join_path(&public_url, "device"))
                .map_err(|e| ConfigError::new("DEVICE_VERIFICATION_URL", e.to_string()))?,
        };

        let jwt_secret = vars.get("JWT_SECRET").map(SecretString::from);
        match (&jwt_secret, production) {
            (Some(secret), _) if secret.expose_secret().len() < 32 => {
                return Err(ConfigError::new("JWT_SECRET", "must be at least 32 bytes"));
            }
            (None, true) => {
                return Err(ConfigError::new("JWT_SECRET", "is required when APP_ENV=production"));
            }
            _ => {}
        }

        let cors_origins = match vars.get("CORS_ORIGINS") {
            None if production => CorsOrigins::List(Vec::new()),
            None => CorsOrigins::Any,
            Some(raw) if raw.trim() == "*" => CorsOrigins::Any,
            Some(raw) => CorsOrigins::List(parse_origins(&raw)?),
        };

        let smtp_url = vars.secret_url("SMTP_URL", &["smtp", "smtps"])?;
        let database_url = vars.secret_url("DATABASE_URL", &["postgres", "postgresql"])?;
        let redis_url = vars.secret_url("REDIS_URL", &["redis", "rediss", "redis+unix", "unix"])?;

        let stripe_webhook_secret = vars.get("STRIPE_WEBHOOK_SECRET").map(SecretString::from);
        let stripe_secret_key = vars.get("STRIPE_SECRET_KEY").map(SecretString::from);
        let gateway = GatewayConfig::read(&|name| vars.get(name))?;
        let oauth = OAuthConfig::read(&|name| vars.get(name))?;
        // A flow's PKCE verifier is stored encrypted, under SECRETS_KEY.
        if production && !oauth.keys().is_empty() && gateway.secrets_key.is_none() {
            return Err(ConfigError::new(
                "SECRETS_KEY",
                "is required when APP_ENV=production and an identity provider is configured",
            ));
        }

        Ok(Self {
            database_url,
            database_pool_size: database_pool_size(&vars)?,
            data_dir: vars
                .get("DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("./data")),
            redis_url,
            redis_key_prefix: vars.get("REDIS_KEY_PREFIX").unwrap_or_else(|| "tollgate:".to_owned()),
            host,
            port,
            public_url,
            app_url,
            app_env,
            jwt_secret,
            access_token_ttl: Duration::from_secs(vars.positive("ACCESS_TOKEN_TTL_SECS")?.unwrap_or(900)),
            refresh_token_ttl: Duration::from_secs(vars.positive("REFRESH_TOKEN_TTL_SECS")?.unwrap_or(2_592_000)),
            smtp_url,
            mail_from: vars
                .get("MAIL_FROM")
                .unwrap_or_else(|| "Tollgate <no-reply@localhost>".to_owned()),
            stripe_secret_key,
            stripe_webhook_secret,
            stripe_api_base: vars.url("STRIPE_API_BASE")?.unwrap_or_else(default_stripe_base),
            // Zero is allowed: no grace at all.
            billing_grace_period: Duration::from_secs(
                u64::from(vars.parse::<u32>("BILLING_GRACE_DAYS")?.unwrap_or(7)) * 86_400,
            ),
            cors_origins,
            device_verification_url,
            registration_open: vars.bool("REGISTRATION_OPEN")?.unwrap_or(true),
            auth_rate_limit_per_minute: vars.positive("AUTH_RATE_LIMIT_PER_MINUTE")?.unwrap_or(30),
            lockout_threshold: vars.positive("LOCKOUT_THRESHOLD")?.unwrap_or(5),
            lockout_window: Duration::from_secs(vars.positive("LOCKOUT_SECS")?.unwrap_or(900)),
            require_mfa_for_staff: vars.bool("REQUIRE_MFA_FOR_STAFF")?.unwrap_or(production),
            graphql_max_depth: vars.positive("GRAPHQL_MAX_DEPTH")?.unwrap_or(limits::DEFAULT_MAX_DEPTH),
            graphql_max_complexity: vars
                .positive("GRAPHQL_MAX_COMPLEXITY")?
                .unwrap_or(limits::DEFAULT_MAX_COMPLEXITY),
            graphql_max_statements: vars
                .positive("GRAPHQL_MAX_STATEMENTS")?
                .unwrap_or(limits::DEFAULT_MAX_STATEMENTS),
            graphql_max_response_bytes: vars
                .positive("GRAPHQL_MAX_RESPONSE_BYTES")?
                .unwrap_or(limits::DEFAULT_MAX_RESPONSE_BYTES),
            trusted_proxies: parse_networks("TRUSTED_PROXIES", vars.get("TRUSTED_PROXIES"))?,
            playground: vars.bool("PLAYGROUND")?.unwrap_or(!production),
            introspection: vars.bool("INTROSPECTION")?.unwrap_or(!production),
            log_format: match vars.get("LOG_FORMAT").as_deref() {
                None if production => LogFormat::Json,
                None => LogFormat::Pretty,
                Some("pretty") => LogFormat::Pretty,
                Some("json") => LogFormat::Json,
                Some(other) => {
                    return Err(ConfigError::new(
                        "LOG_FORMAT",
                        format!("expected pretty or json, got {other:?}"),
                    ));
                }
            },
            gateway,
            oauth,
        })
    }

    /// `true` outside production.
    pub fn is_development(&self) -> bool {
        self.app_env == AppEnv::Development
    }

    /// The public URL joined with a path such as `graphql`.
    pub fn public_endpoint(&self, path: &str) -> String {
        join_path(&self.public_url, path)
    }

    /// The app URL joined with a path such as `verify-email`.
    pub fn app_endpoint(&self, path: &str) -> String {
        join_path(&self.app_url, path)
    }

    /// The data folder, made absolute so child processes and socket paths
    /// do not depend on the working directory.
    pub fn absolute_data_dir(&self) -> std::io::Result<PathBuf> {
        absolute(&self.data_dir)
    }
}

/// Connections per instance: PostgreSQL's default `max_connections` is
/// 100, and each instance also keeps a few of its own (jobs, listeners).
const DEFAULT_POOL_SIZE: usize = 16;
/// More than any single PostgreSQL serves well; past it, use a pooler.
const MAX_POOL_SIZE: usize = 1000;

fn database_pool_size<F: Fn(&str) -> Option<String>>(vars: &Vars<'_, F>) -> Result<usize, ConfigError> {
    let size = vars.positive("DATABASE_POOL_SIZE")?.unwrap_or(DEFAULT_POOL_SIZE);
    if size > MAX_POOL_SIZE {
        return Err(ConfigError::new(
            "DATABASE_POOL_SIZE",
            format!("must be at most {MAX_POOL_SIZE}"),
        ));
    }
    Ok(size)
}

fn default_stripe_base() -> Url {
    // A literal that always parses; kept out of the fallible path above.
    Url::parse("https://api.stripe.com").unwrap_or_else(|_| unreachable!("constant URL"))
}

fn join_path(base: &Url, path: &str) -> String {
    format!(
        "{}/{}",
        base.as_str().trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

fn socket_display(host: IpAddr, port: u16) -> String {
    match host {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    // `std::path::absolute` also drops `.` components, keeping socket paths short.
    std::path::absolute(path)
}

fn parse_origins(raw: &str) -> Result<Vec<String>, ConfigError> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|origin| {
            let url = Url::parse(origin).map_err(|e| ConfigError::new("CORS_ORIGINS", format!("{origin:?}: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(ConfigError::new(
                    "CORS_ORIGINS",
                    format!("{origin:?} is not an http(s) origin"),
                ));
            }
            Ok(url.origin().ascii_serialization())
        })
        .collect()
}

/// Parses a comma-separated list of addresses and CIDR ranges.
pub fn parse_networks(variable: &'static str, raw: Option<String>) -> Result<Vec<IpNet>, ConfigError> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            IpNet::from_str(item)
                .or_else(|_| IpAddr::from_str(item).map(IpNet::from))
                .map_err(|_| ConfigError::new(variable, format!("{item:?} is not an address or CIDR range")))
        })
        .collect()
}

/// Typed access to the variable source.
struct Vars<'a, F: Fn(&str) -> Option<String>>(&'a F);

impl<F: Fn(&str) -> Option<String>> Vars<'_, F> {
    /// The value, with empty strings treated as unset.
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    fn parse<T: FromStr>(&self, name: &'static str) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.get(name)
            .map(|raw| {
                raw.trim()
                    .parse::<T>()
                    .map_err(|e| ConfigError::new(name, format!("{raw:?}: {e}")))
            })
            .transpose()
    }

    fn positive<T: FromStr + Default + PartialOrd>(&self, name: &'static str) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        match self.parse::<T>(name)? {
            Some(v) if v <= T::default() => Err(ConfigError::new(name, "must be greater than zero")),
            other => Ok(other),
        }
    }

    fn bool(&self, name: &'static str) -> Result<Option<bool>, ConfigError> {
        self.get(name)
            .map(|raw| match raw.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::new(name, format!("expected true or false, got {raw:?}"))),
            })
            .transpose()
    }

    fn url(&self, name: &'static str) -> Result<Option<Url>, ConfigError> {
        self.get(name)
            .map(|raw| {
                let url = Url::parse(raw.trim()).map_err(|e| ConfigError::new(name, format!("{raw:?}: {e}")))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(ConfigError::new(name, "must be an http(s) URL"));
                }
                Ok(url)
            })
            .transpose()
    }

    /// A URL that may carry a password, so it is held as a secret and its
    /// value never appears in the error message.
    fn secret_url(&self, name: &'static str, schemes: &[&str]) -> Result<Option<SecretString>, ConfigError> {
        let Some(raw) = self.get(name) else { return Ok(None) };
        let url = Url::parse(raw.trim()).map_err(|e| ConfigError::new(name, format!("not a URL: {e}")))?;
        if !schemes.contains(&url.scheme()) {
            return Err(ConfigError::new(
                name,
                format!("scheme must be one of {}", schemes.join(", ")),
            ));
        }
        Ok(Some(SecretString::from(raw.trim().to_owned())))
    }
}

/// Defaults of the GraphQL query limits (`GRAPHQL_MAX_*`).
pub mod limits {
    /// Default GraphQL depth limit.
    pub const DEFAULT_MAX_DEPTH: usize = 16;
    /// Default GraphQL complexity limit: an ADMIN's page of 100
    /// organizations with their members costs about 4,400, and the standard
    /// introspection query a few hundred.
    pub const DEFAULT_MAX_COMPLEXITY: usize = 20_000;
    /// Default statements one query may run.
    pub const DEFAULT_MAX_STATEMENTS: u64 = 500;
    /// Default bytes of one answer: 4 MiB, many times the
    /// standard introspection answer.
    pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_vars(&vars)
    }

    #[test]
    fn defaults_follow_the_operating_contract() {
        let c = config(&[]).unwrap();
        assert_eq!(c.port, 8000);
        assert_eq!(c.public_url.as_str(), "http://127.0.0.1:8000/");
        assert_eq!(c.public_endpoint("graphql"), "http://127.0.0.1:8000/graphql");
        assert_eq!(c.device_verification_url.as_str(), "http://127.0.0.1:8000/device");
        assert_eq!(c.cors_origins, CorsOrigins::Any);
        assert_eq!(c.graphql_max_depth, 16);
        assert_eq!(c.graphql_max_complexity, 20_000);
        assert_eq!(c.database_pool_size, 16);
        assert_eq!(
            config(&[("DATABASE_POOL_SIZE", " 40 ")]).unwrap().database_pool_size,
            40
        );
        assert!(c.playground && c.introspection && c.registration_open);
        assert!(!c.require_mfa_for_staff, "development does not ask staff for TOTP");
        let behind_a_path = config(&[("PUBLIC_URL", "https://example.com/api")]).unwrap();
        assert_eq!(
            behind_a_path.device_verification_url.as_str(),
            "https://example.com/api/device"
        );
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (var, value) in [
            ("PORT", "eighty"),
            ("APP_ENV", "staging"),
            ("REGISTRATION_OPEN", "maybe"),
            ("REQUIRE_MFA_FOR_STAFF", "sometimes"),
            ("TRUSTED_PROXIES", "10.0.0.0/33"),
            ("DATABASE_URL", "mysql://x"),
            ("GRAPHQL_MAX_DEPTH", "0"),
            ("JWT_SECRET", "short"),
            ("CORS_ORIGINS", "ftp://example.com"),
            ("BILLING_GRACE_DAYS", "-1"),
            ("DATABASE_POOL_SIZE", "0"),
            ("DATABASE_POOL_SIZE", "lots"),
            ("DATABASE_POOL_SIZE", "100000"),
        ] {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.variable, var, "{err}");
            assert!(err.to_string().contains(var));
        }
    }

    #[test]
    fn production_requires_a_jwt_secret_and_closes_conveniences() {
        assert_eq!(config(&[("APP_ENV", "production")]).unwrap_err().variable, "JWT_SECRET");
        let c = config(&[("APP_ENV", "production"), ("JWT_SECRET", &"x".repeat(32))]).unwrap();
        assert!(!c.playground && !c.introspection);
        assert!(c.require_mfa_for_staff, "production asks staff for TOTP");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.cors_origins, CorsOrigins::List(vec![]));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let c = config(&[
            ("DATABASE_URL", "postgres://u:hunter2@db/x"),
            ("JWT_SECRET", &"s".repeat(40)),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains(&"s".repeat(40)),
            "{shown}"
        );
        assert!(!redact_url("postgres://u@db/x?password=hunter2&sslmode=require").contains("hunter2"));
    }
}
