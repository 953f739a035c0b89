//! Running the real `tidings` binary as an admin command, for the command-line tests: a command
//! that no `TIDINGS_*` variable of the test's environment redirects, its standard input fed and
//! its output checked as a success or as a clean failure, and the lines of one that keeps
//! running (`tail --follow`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The variables that would point a command elsewhere than the test says.
const REDIRECTING: &[&str] = &[
    "TIDINGS_SERVER",
    "TIDINGS_TOKEN",
    "TIDINGS_DATA_DIR",
    "TIDINGS_CONFIG",
    "TIDINGS_JWT_SECRET",
    "TIDINGS_LOG",
];

/// `tidings ARGS`, with none of the redirecting variables set.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
    command.args(args);
    for name in REDIRECTING {
        command.env_remove(name);
    }
    command
}

/// Writes `stdin` to a child spawned with piped stdin, stdout and stderr, and waits for it.
pub fn finish(mut child: Child, stdin: &str) -> Output {
    let mut input = child.stdin.take().expect("piped stdin");
    // A command that refuses before reading its standard input may have exited already.
    if let Err(error) = input.write_all(stdin.as_bytes()) {
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::BrokenPipe,
            "write stdin: {error}"
        );
    }
    drop(input);
    child.wait_with_output().expect("wait for tidings")
}

/// The stdout of a command that must have succeeded.
pub fn success(output: Output, args: &[&str]) -> String {
    assert!(
        output.status.success(),
        "tidings {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 stdout")
}

/// The stderr of a command that must have failed cleanly: exit code 1, nothing on stdout, one
/// `error: …` message without a debug dump or backtrace.
pub fn failure(output: Output, args: &[&str]) -> String {
    assert_eq!(
        output.status.code(),
        Some(1),
        "tidings {args:?} should fail"
    );
    assert!(
        output.stdout.is_empty(),
        "a failure prints nothing on stdout"
    );
    let stderr = String::from_utf8(output.stderr).expect("utf-8 stderr");
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
    assert!(
        !stderr.contains("Backtrace") && !stderr.contains(" { "),
        "clean: {stderr}"
    );
    stderr
}

/// Standard output of `--json`: one JSON object per line.
pub fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

/// How long a test waits for a running command's next line before it fails instead of hanging.
pub const LINE_WAIT: Duration = Duration::from_secs(30);

/// The stdout lines of a running child, read on a thread so that a test waits with a bound.
pub struct StdoutLines {
    lines: mpsc::Receiver<String>,
}

impl StdoutLines {
    /// Takes the child's piped stdout.
    pub fn of(child: &mut Child) -> StdoutLines {
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        StdoutLines { lines }
    }

    /// The next line (without its line end); kills the child and fails the test when none
    /// comes within [`LINE_WAIT`].
    pub fn next(&self, child: &mut Child) -> String {
        match self.lines.recv_timeout(LINE_WAIT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("the command printed no line within {LINE_WAIT:?}");
            }
        }
    }
}
