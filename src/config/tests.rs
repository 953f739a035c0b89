//! Tests of the configuration layers: defaults, file keys, precedence and refusals.

use std::collections::HashMap;
use std::time::Duration;

use super::*;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn write_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tidings.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn defaults_match_the_documented_values() {
    let config = Config::load_with_env(None, Overrides::default(), env(&[])).unwrap();
    assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(config.data_dir, PathBuf::from("./data"));
    assert_eq!(config.log.durability, Durability::Always);
    assert_eq!(config.log.default_partitions, 8);
    assert_eq!(config.limits.rate_limit, 50);
    assert_eq!(config.limits.max_body_bytes, 1 << 20);
    assert_eq!(config.limits.max_content_bytes, 16 << 10);
    assert_eq!(config.limits.max_record_bytes, 1 << 20);
    assert_eq!(config.limits.max_store_lag, 100_000);
    assert_eq!(config.chat.partitions, 4);
    assert_eq!(config.auth.jwt_secret, None);
    assert_eq!(config.logging.format, LogFormat::Text);
    assert_eq!(config.logging.level, "info");
}

#[test]
fn every_file_key_is_read() {
    let (_dir, path) = write_file(
        r#"
        listen = "0.0.0.0:9000"
        dataDir = "/var/lib/tidings"
        [log]
        durability = "interval:250"
        defaultPartitions = 3
        [limits]
        rateLimit = 0
        maxBodyBytes = 2048
        maxContentBytes = 1024
        maxRecordBytes = 4096
        maxStoreLag = 77
        maxParticipants = 50
        maxTopics = 20
        maxPartitions = 300
        maxGroups = 9
        minFreeDiskBytes = 4096
        [chat]
        partitions = 5
        [auth]
        jwtSecret = "s3cret"
        [logging]
        format = "json"
        level = "debug"
        "#,
    );
    let config = Config::load_with_env(Some(&path), Overrides::default(), env(&[])).unwrap();
    assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/tidings"));
    assert_eq!(
        config.log.durability,
        Durability::Interval(Duration::from_millis(250))
    );
    assert_eq!(config.log.default_partitions, 3);
    assert_eq!(
        config.limits,
        Limits {
            rate_limit: 0,
            max_body_bytes: 2048,
            max_content_bytes: 1024,
            max_record_bytes: 4096,
            max_batch_records: 1000,
            max_store_lag: 77,
            max_participants: 50,
            max_topics: 20,
            max_partitions: 300,
            max_groups: 9,
            min_free_disk_bytes: 4096,
        }
    );
    assert_eq!(config.store_limits().max_participants, 50);
    assert_eq!(config.log_config().max_topics, 20);
    assert_eq!(config.log_config().max_total_partitions, 300);
    assert_eq!(config.chat.partitions, 5);
    assert_eq!(config.auth.jwt_secret.as_deref(), Some("s3cret"));
    assert_eq!(config.logging.format, LogFormat::Json);
    assert_eq!(config.logging.level, "debug");
    assert_eq!(config.log_config().max_record_bytes, 4096);
    assert_eq!(config.log_config().min_free_disk_bytes, 4096);
}

#[test]
fn flags_beat_env_which_beats_the_file_which_beats_defaults() {
    let (_dir, path) = write_file(
        "listen = \"127.0.0.1:1111\"\ndataDir = \"from-file\"\n\
         [limits]\nrateLimit = 7\n[log]\ndurability = \"never\"\n",
    );
    let environment = env(&[
        ("TIDINGS_LISTEN", "127.0.0.1:2222"),
        ("TIDINGS_RATE_LIMIT", "9"),
    ]);
    let flags = Overrides {
        listen: Some("127.0.0.1:3333".parse().unwrap()),
        ..Overrides::default()
    };
    let config = Config::load_with_env(Some(&path), flags, environment).unwrap();
    assert_eq!(config.listen.port(), 3333, "flag beats env and file");
    assert_eq!(config.limits.rate_limit, 9, "env beats file");
    assert_eq!(
        config.data_dir,
        PathBuf::from("from-file"),
        "file beats default"
    );
    assert_eq!(config.log.durability, Durability::Never);
    assert_eq!(config.logging.level, "info", "default when nobody sets it");
}

#[test]
fn tidings_config_names_the_file_unless_a_flag_does() {
    let (_dir, path) = write_file("listen = \"127.0.0.1:4444\"\n");
    let path_str = path.to_str().unwrap();
    let from_env = Config::load_with_env(
        None,
        Overrides::default(),
        env(&[("TIDINGS_CONFIG", path_str)]),
    )
    .unwrap();
    assert_eq!(from_env.listen.port(), 4444);
    let (_other_dir, other) = write_file("listen = \"127.0.0.1:5555\"\n");
    let from_flag = Config::load_with_env(
        Some(&other),
        Overrides::default(),
        env(&[("TIDINGS_CONFIG", path_str)]),
    )
    .unwrap();
    assert_eq!(from_flag.listen.port(), 5555);
}

#[test]
fn empty_env_values_count_as_unset() {
    let config = Config::load_with_env(
        None,
        Overrides::default(),
        env(&[("TIDINGS_LISTEN", ""), ("TIDINGS_JWT_SECRET", "")]),
    )
    .unwrap();
    assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(config.auth.jwt_secret, None);
}

#[test]
fn an_unknown_key_is_an_error_naming_it() {
    let (_dir, path) = write_file("[limits]\nrateLimt = 5\n");
    let err = Config::from_file(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    assert!(err.to_string().contains("rateLimt"), "{err}");
    let (_dir, path) = write_file("lsiten = \"127.0.0.1:1\"\n");
    assert!(Config::from_file(&path)
        .unwrap_err()
        .to_string()
        .contains("lsiten"));
}

#[test]
fn a_bad_address_names_its_origin() {
    let (_dir, path) = write_file("listen = \"localhost\"\n");
    let err = Config::from_file(&path).unwrap_err();
    assert!(matches!(err, ConfigError::BadAddress { .. }), "{err:?}");
    assert!(err.to_string().starts_with("listen in "), "{err}");
    let err = Config::load_with_env(
        None,
        Overrides::default(),
        env(&[("TIDINGS_LISTEN", "nowhere:80")]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("TIDINGS_LISTEN"), "{err}");
}

#[test]
fn a_bad_durability_names_its_origin() {
    let (_dir, path) = write_file("[log]\ndurability = \"sometimes\"\n");
    let err = Config::from_file(&path).unwrap_err();
    assert!(matches!(err, ConfigError::BadDurability { .. }), "{err:?}");
    assert!(err.to_string().contains("log.durability"), "{err}");
    let err = Config::load_with_env(
        None,
        Overrides::default(),
        env(&[("TIDINGS_DURABILITY", "interval:0")]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("TIDINGS_DURABILITY"), "{err}");
}

#[test]
fn out_of_range_values_and_wrong_types_are_refused() {
    for text in [
        "[log]\ndefaultPartitions = 0\n",
        "[chat]\npartitions = 0\n",
        "[limits]\nmaxBodyBytes = 0\n",
        "[limits]\nmaxParticipants = 0\n",
        "[limits]\nmaxTopics = 0\n",
        "[limits]\nmaxPartitions = 0\n",
        "[limits]\nmaxGroups = 0\n",
        "[limits]\nmaxParticipants = -5\n",
        "[notify]\npreviewBytes = 0\n",
        "[logging]\nformat = \"yaml\"\n",
        "[logging]\nlevel = \"tidings=loud\"\n",
        "[limits]\nrateLimit = \"fast\"\n",
        "[limits]\nrateLimit = -1\n",
    ] {
        let (_dir, path) = write_file(text);
        assert!(Config::from_file(&path).is_err(), "{text}");
    }
    let err = Config::load_with_env(
        None,
        Overrides::default(),
        env(&[("TIDINGS_RATE_LIMIT", "x")]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("TIDINGS_RATE_LIMIT"), "{err}");
}

#[test]
fn a_missing_file_is_a_read_error() {
    let err = Config::from_file(Path::new("/nonexistent/tidings.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
}

#[test]
fn debug_output_hides_the_secret() {
    let config = Config {
        auth: AuthSettings {
            jwt_secret: Some("hunter2".into()),
            ..AuthSettings::default()
        },
        ..Config::default()
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"));
    assert!(shown.contains("<redacted>"));
}

#[test]
fn chat_partitions_come_from_the_environment() {
    let config = Config::load_with_env(
        None,
        Overrides::default(),
        env(&[("TIDINGS_CHAT_PARTITIONS", "3")]),
    )
    .unwrap();
    assert_eq!(config.chat.partitions, 3);
    let err = Config::load_with_env(
        None,
        Overrides::default(),
        env(&[("TIDINGS_CHAT_PARTITIONS", "0")]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("chat.partitions"), "{err}");
}

#[test]
fn the_ws_section_is_read_and_checked() {
    let defaults = Config::load_with_env(None, Overrides::default(), env(&[])).unwrap();
    assert_eq!(defaults.ws, WsSettings::default());
    assert_eq!(defaults.ws.queue_frames, 1024);
    assert_eq!(defaults.ws.ping_interval, Duration::from_secs(20));
    let (_dir, path) = write_file(
        "[ws]\nqueueFrames = 8\nmaxSessions = 100\nmaxSessionsPerUser = 3\n\
         maxFrameBytes = 1000\nhardFrameBytes = 2000\nframeRate = 0\npingIntervalMs = 500\n\
         presenceGraceMs = 250\ntypingTtlMs = 700\ntypingIntervalMs = 100\n\
         readBufferBytes = 1024\nwriteBufferBytes = 0\nwriteDelayMs = 40\n",
    );
    let environment = env(&[("TIDINGS_WS_MAX_SESSIONS", "42")]);
    let config = Config::load_with_env(Some(&path), Overrides::default(), environment).unwrap();
    let ws = &config.ws;
    assert_eq!(ws.max_sessions, 42, "the environment beats the file");
    assert_eq!((ws.queue_frames, ws.max_sessions_per_user), (8, 3));
    assert_eq!((ws.max_frame_bytes, ws.hard_frame_bytes), (1000, 2000));
    assert_eq!(ws.frame_rate, 0);
    assert_eq!(ws.ping_interval, Duration::from_millis(500));
    assert_eq!(ws.presence_grace, Duration::from_millis(250));
    assert_eq!(ws.typing_ttl, Duration::from_millis(700));
    assert_eq!(ws.typing_interval, Duration::from_millis(100));
    assert_eq!((ws.read_buffer_bytes, ws.write_buffer_bytes), (1024, 0));
    assert_eq!(ws.write_delay, Duration::from_millis(40));
    assert_eq!(
        defaults.ws.write_delay,
        Duration::ZERO,
        "writes at once by default"
    );
    let hub = ws.hub_config(7);
    assert_eq!((hub.max_sessions, hub.queue_frames), (7, 8));

    let (_dir, bad) = write_file("[ws]\nmaxFrameBytes = 4096\nhardFrameBytes = 4096\n");
    let refused = Config::load_with_env(Some(&bad), Overrides::default(), env(&[])).unwrap_err();
    assert!(
        refused.to_string().contains("ws.hardFrameBytes"),
        "{refused}"
    );
    let (_dir, zero) = write_file("[ws]\nqueueFrames = 0\n");
    let refused = Config::load_with_env(Some(&zero), Overrides::default(), env(&[])).unwrap_err();
    assert!(refused.to_string().contains("ws.queueFrames"), "{refused}");
    let (_dir, slow) = write_file("[ws]\nwriteDelayMs = 5000\n");
    let refused = Config::load_with_env(Some(&slow), Overrides::default(), env(&[])).unwrap_err();
    assert!(refused.to_string().contains("ws.writeDelayMs"), "{refused}");
}

#[test]
fn notification_sinks_come_from_the_file_with_documented_defaults() {
    let (_dir, path) = write_file(
        "[[notify.sinks]]\nname = \"push\"\ntype = \"webhook\"\n\
         url = \"http://127.0.0.1:9000/notify\"\nsecret = \"s3cret\"\n\
         [[notify.sinks]]\nname = \"edge.log\"\ntype = \"log\"\nstartFrom = \"earliest\"\n",
    );
    let config = Config::load_with_env(Some(&path), Overrides::default(), env(&[])).unwrap();
    let [push, edge] = config.notify.sinks.as_slice() else {
        panic!("two sinks: {:?}", config.notify.sinks);
    };
    assert_eq!(push.name, "push");
    let crate::notify::SinkKind::Webhook(webhook) = &push.kind else {
        panic!("a webhook: {push:?}");
    };
    assert_eq!(webhook.url.as_str(), "http://127.0.0.1:9000/notify");
    assert_eq!(webhook.secret, "s3cret");
    assert_eq!(webhook.max_attempts, 5);
    assert_eq!(webhook.timeout, Duration::from_secs(5));
    assert_eq!(webhook.backoff, crate::notify::Backoff::default());
    assert_eq!(webhook.concurrency, 4);
    assert_eq!(edge.name, "edge.log");
    assert_eq!(edge.kind, crate::notify::SinkKind::Log);
    assert_eq!(push.start_from, crate::notify::StartFrom::Latest);
    assert_eq!(edge.start_from, crate::notify::StartFrom::Earliest);
    let (_dir, bad) =
        write_file("[[notify.sinks]]\nname = \"x\"\ntype = \"log\"\nstartFrom = \"now\"\n");
    let refused = Config::load_with_env(Some(&bad), Overrides::default(), env(&[]));
    let message = refused
        .expect_err("startFrom \"now\" is refused")
        .to_string();
    assert!(message.contains("notify.sinks[0].startFrom"), "{message}");
    assert!(
        !format!("{config:?}").contains("s3cret"),
        "Debug redacts the secret"
    );
    let none = Config::load_with_env(None, Overrides::default(), env(&[])).unwrap();
    assert!(none.notify.sinks.is_empty());
}

mod properties {
    //! Arbitrary text as a configuration file: an error message or a configuration, never a
    //! panic (the file is read before anything else, so a panic would be the whole report).

    use proptest::prelude::*;

    use super::*;

    /// `[section] key` pairs the file knows, plus one it does not.
    const KEYS: &[(&str, &str)] = &[
        ("", "listen"),
        ("", "dataDir"),
        ("log", "durability"),
        ("log", "defaultPartitions"),
        ("limits", "rateLimit"),
        ("limits", "maxBodyBytes"),
        ("limits", "maxRecordBytes"),
        ("limits", "maxBatchRecords"),
        ("limits", "maxStoreLag"),
        ("chat", "partitions"),
        ("auth", "jwtSecret"),
        ("auth", "jwks"),
        ("auth", "audience"),
        ("auth", "jwksRefreshMs"),
        ("ws", "maxFrameBytes"),
        ("ws", "hardFrameBytes"),
        ("ws", "pingIntervalMs"),
        ("ws", "writeDelayMs"),
        ("ws", "typingTtlMs"),
        ("logging", "format"),
        ("logging", "level"),
        ("notify.sinks", "type"),
        ("notify.sinks", "url"),
        ("notify.sinks", "timeoutMs"),
        ("notify.sinks", "backoffBaseMs"),
        ("limits", "unknownKey"),
    ];

    /// TOML values of every type, including the edges of the integer range.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            Just(i64::MAX.to_string()),
            Just("0".to_owned()),
            Just("-1".to_owned()),
            any::<f64>().prop_map(|f| format!("{f:?}")),
            any::<bool>().prop_map(|b| b.to_string()),
            ".{0,16}".prop_map(|s| toml::Value::String(s).to_string()),
            Just(r#""interval:18446744073709551615""#.to_owned()),
            Just(r#""[::1]:0""#.to_owned()),
            Just(r#""http://[""#.to_owned()),
            Just("[1, [2, [3]]]".to_owned()),
            Just("{ a = 1 }".to_owned()),
        ]
    }

    fn toml_shaped() -> impl Strategy<Value = String> {
        proptest::collection::vec((proptest::sample::select(KEYS), value()), 0..8).prop_map(
            |pairs| {
                let mut text = String::new();
                for ((section, key), value) in pairs {
                    match section {
                        "" => {}
                        "notify.sinks" => text.push_str("[[notify.sinks]]\nname = \"s\"\n"),
                        section => text.push_str(&format!("[{section}]\n")),
                    }
                    text.push_str(&format!("{key} = {value}\n"));
                }
                text
            },
        )
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("fuzz.toml"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any text is a configuration or an error naming the file, never a panic.
        #[test]
        fn any_text_loads_or_is_refused(text in "(.|\n){0,120}") {
            if let Err(error) = load(&text) {
                prop_assert!(!error.to_string().is_empty());
            }
        }

        /// Known keys with values of any type are a configuration or an error, never a panic.
        #[test]
        fn toml_shaped_files_load_or_are_refused(text in toml_shaped()) {
            if let Err(error) = load(&text) {
                prop_assert!(!error.to_string().is_empty());
            }
        }
    }

    #[test]
    fn deeply_nested_values_are_an_error_not_a_stack_overflow() {
        let arrays = format!("listen = {}", "[".repeat(100_000));
        assert!(matches!(load(&arrays), Err(ConfigError::Syntax { .. })));
        let tables = format!("listen = {}", "{ a = ".repeat(100_000));
        assert!(matches!(load(&tables), Err(ConfigError::Syntax { .. })));
        let closed = format!("listen = {}1{}", "[".repeat(5_000), "]".repeat(5_000));
        assert!(load(&closed).is_err());
    }
}

#[test]
fn the_signalr_path_is_configurable_and_checked() {
    let path = Path::new("t.toml");
    assert_eq!(Config::default().signalr.path, "/chathub");
    let moved = Config::from_toml("[signalr]\npath = \"/hubs/chat\"\n", path).unwrap();
    assert_eq!(moved.signalr.path, "/hubs/chat");
    for bad in [
        "chathub", "/", "/chat/", "/a//b", "/chat?x", "/ws", "/api/hub", "/metrics", "/c hat",
    ] {
        let refused = Config::from_toml(&format!("[signalr]\npath = {bad:?}\n"), path);
        let message = refused.expect_err(bad).to_string();
        assert!(message.contains("signalr.path"), "{bad}: {message}");
    }
}

#[test]
fn tls_takes_both_files_from_any_layer_and_refuses_one_alone() {
    let (_dir, path) = write_file("[tls]\ncert = \"/etc/tidings/cert.pem\"\n");
    let alone = Config::load_with_env(Some(&path), Overrides::default(), env(&[]));
    let message = alone.unwrap_err().to_string();
    assert!(message.contains("tls.key"), "{message}");

    let environment = env(&[("TIDINGS_TLS_KEY", "/etc/tidings/key.pem")]);
    let config = Config::load_with_env(Some(&path), Overrides::default(), environment).unwrap();
    assert!(config.tls.enabled());
    assert_eq!(config.tls.scheme(), "https");
    assert_eq!(config.tls.key, Some(PathBuf::from("/etc/tidings/key.pem")));
    assert_eq!(
        config.tls.cert,
        Some(PathBuf::from("/etc/tidings/cert.pem"))
    );
    assert_eq!(
        Config::default().tls.scheme(),
        "http",
        "plain HTTP by default"
    );
}
