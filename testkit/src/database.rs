//! Real database servers for the import tests: MariaDB (`mariadbd`) and PostgreSQL
//! (`postgres`) from Debian's packages (`.ci/databases.sh` installs them), each started in a
//! temporary folder on a free 127.0.0.1 port with a user `ember` and a password, stopped (and
//! the folder removed) on drop. SQL goes through the packages' own clients (`mariadb`, `psql`):
//! what a test checks against is what a plain client sees.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::util::{free_port, output_text, tail_lines, wait_for};

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The password of user `ember` on both servers.
pub const PASSWORD: &str = "ember-pw-0123";

/// The database (MariaDB) or database name (PostgreSQL) the tests use.
pub const DATABASE: &str = "shop";

/// The columns of the `transactions` table the tests and the import benchmark load: Online
/// Retail's sale lines with an `id` key.
pub const TRANSACTION_COLUMNS: &str = "id, invoice_no, stock_code, description, quantity, invoice_date, unit_price, customer_id, country";

/// Writes `n` sale lines of Online Retail (`data/online_retail.csv.gz` of `repo`), after
/// skipping `skip`, as a tab-separated load file for `LOAD DATA` and `\copy` (`\N` for NULL,
/// backslashes escaped, the customer id as an integer) with ids from `first_id`, into `dir`.
///
/// # Errors
/// When the data cannot be read or the file written.
pub fn online_retail_load_file(
    repo: &Path,
    dir: &Path,
    skip: usize,
    n: usize,
    first_id: usize,
) -> Result<PathBuf, String> {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(repo.join("data/online_retail.csv.gz")).map_err(|e| e.to_string())?,
    )
    .read_to_string(&mut text)
    .map_err(|e| e.to_string())?;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let escape = |s: &str| {
        if s.is_empty() {
            "\\N".to_string()
        } else {
            s.replace('\\', "\\\\").replace('\t', " ")
        }
    };
    let mut out = String::new();
    for (i, record) in reader.records().skip(skip).take(n).enumerate() {
        let r = record.map_err(|e| e.to_string())?;
        let customer = r[6].split('.').next().unwrap_or_default().to_string();
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            first_id + i,
            escape(&r[0]),
            escape(&r[1]),
            escape(&r[2]),
            &r[3],
            &r[4],
            &r[5],
            escape(&customer),
            escape(&r[7]),
        ));
    }
    let path = dir.join(format!("rows-{skip}-{n}.tsv"));
    std::fs::write(&path, out).map_err(|e| e.to_string())?;
    Ok(path)
}

/// The environment variable the import jobs of [`import_job`] read the password from.
pub const PASSWORD_VAR: &str = "EMBER_DB_PASSWORD";

/// Writes a job folder `dir/<name>` that imports `source` (`table = "…"` or `query = "…"`)
/// of database `kind` at `url` (password from [`PASSWORD_VAR`]), with `extra` lines in the
/// input (`split_by`, `splits`, `incremental`), into Parquet partitioned by order date: the
/// [`TRANSACTION_COLUMNS`] and `order_date`. The output path is the parameter `output`.
///
/// # Errors
/// When the files cannot be written.
pub fn import_job(
    dir: &Path,
    name: &str,
    kind: &str,
    url: &str,
    source: &str,
    extra: &str,
) -> Result<PathBuf, String> {
    let job = dir.join(name);
    std::fs::create_dir_all(&job).map_err(|e| e.to_string())?;
    std::fs::write(
        job.join("job.toml"),
        format!(
            r#"[job]
name = "import_test"

[params]
output = "out"

[[input]]
name = "transactions"
format = "{kind}"
url = "{url}"
password_env = "{PASSWORD_VAR}"
{source}
{extra}

[output]
path = "${{output}}"
partition_by = ["order_date"]
sql = "out.sql"
"#
        ),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        job.join("out.sql"),
        format!(
            "SELECT {TRANSACTION_COLUMNS}, CAST(invoice_date AS DATE) AS order_date FROM transactions"
        ),
    )
    .map_err(|e| e.to_string())?;
    Ok(job)
}

/// A server the tests talk to.
pub trait Server {
    /// `mysql://ember@127.0.0.1:PORT/shop?…` or `postgres://…`: an Ember input URL (no
    /// password).
    fn url(&self) -> String;
    /// Runs `sql` with the package's client as user `ember` and returns what it printed
    /// (tab-separated rows, no header).
    ///
    /// # Errors
    /// The client's output when it fails.
    fn sql(&self, sql: &str) -> Result<String, String>;
    /// The TCP port.
    fn port(&self) -> u16;
    /// Creates the `transactions` table ([`TRANSACTION_COLUMNS`]; `id` the primary key,
    /// `invoice_date` a DATETIME / timestamp, `unit_price` DECIMAL(10,3)).
    ///
    /// # Errors
    /// The client's output.
    fn create_transactions(&self) -> Result<(), String>;
    /// Loads a file of [`online_retail_load_file`] into `transactions`.
    ///
    /// # Errors
    /// The client's output.
    fn load_transactions(&self, file: &Path) -> Result<(), String>;
}

fn which(name: &str, folders: &[&str]) -> Result<PathBuf, String> {
    folders
        .iter()
        .map(|f| Path::new(f).join(name))
        .find(|p| p.exists())
        .ok_or_else(|| format!("{name} is missing: run `bash .ci/databases.sh` (CI does)"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn wait_port(child: &mut Child, what: &str, port: u16, log: &Path) -> Result<(), String> {
    let ready = wait_for(
        &format!("{what} to accept connections"),
        START_TIMEOUT,
        Duration::from_millis(200),
        || {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{what} exited with {status}"));
            }
            Ok(TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()))
        },
    );
    ready.map_err(|e| format!("{e}\n{}", tail_lines(log, 30)))
}

fn run(command: &mut Command, what: &str) -> Result<String, String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{what} failed: {}", output_text(&out)))
    }
}

/// A running MariaDB server with database `shop` and user `ember` (all privileges on it).
pub struct MariaDb {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl MariaDb {
    /// Initializes a data folder (`mariadb-install-db`), starts `mariadbd` on a free port and
    /// creates the database and the user; every wait is bounded.
    ///
    /// # Errors
    /// When MariaDB is missing or does not start (with its log).
    pub fn start() -> Result<Self, String> {
        let bin = ["/usr/sbin", "/usr/bin", "/usr/local/bin"];
        let mariadbd = which("mariadbd", &bin)?;
        let install = which("mariadb-install-db", &bin)?;
        let dir = tempfile::Builder::new()
            .prefix("ember-mariadb-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        let mut init = Command::new(install);
        init.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg("--auth-root-authentication-method=socket")
            .arg("--skip-test-db");
        if is_root() {
            init.arg("--user=root");
        }
        run(&mut init, "mariadb-install-db")?;
        let port = free_port().map_err(|e| e.to_string())?;
        let log = dir.path().join("mariadb.log");
        let mut server = Command::new(mariadbd);
        server
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!(
                "--socket={}",
                dir.path().join("mysql.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                dir.path().join("mariadb.pid").display()
            ))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--skip-name-resolve")
            .arg("--innodb-buffer-pool-size=128M")
            .arg("--local-infile=1");
        if is_root() {
            server.arg("--user=root");
        }
        let mut child = server
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start mariadbd: {e}"))?;
        if let Err(e) = wait_port(&mut child, "mariadbd", port, &log) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        let db = Self { child, port, dir };
        db.root_sql(&format!(
            "CREATE DATABASE {DATABASE}; CREATE USER 'ember'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; \
             CREATE USER 'ember'@'localhost' IDENTIFIED BY '{PASSWORD}'; \
             GRANT ALL ON {DATABASE}.* TO 'ember'@'127.0.0.1'; GRANT ALL ON {DATABASE}.* TO 'ember'@'localhost'; \
             GRANT FILE ON *.* TO 'ember'@'127.0.0.1';"
        ))?;
        Ok(db)
    }

    fn client() -> Result<PathBuf, String> {
        which("mariadb", &["/usr/bin", "/usr/local/bin"])
    }

    /// Runs `sql` as root through the server's socket.
    ///
    /// # Errors
    /// The client's output when it fails.
    pub fn root_sql(&self, sql: &str) -> Result<String, String> {
        run(
            Command::new(Self::client()?)
                .arg("--no-defaults")
                .arg(format!(
                    "--socket={}",
                    self.dir.path().join("mysql.sock").display()
                ))
                .args(["-u", "root", "-B", "-N", "-e", sql]),
            "mariadb (root)",
        )
    }

    /// Stops the server with SIGKILL (a crash), leaving the folder.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server for MariaDb {
    fn url(&self) -> String {
        format!(
            "mysql://ember@127.0.0.1:{}/{DATABASE}?sslmode=disabled",
            self.port
        )
    }

    fn sql(&self, sql: &str) -> Result<String, String> {
        run(
            Command::new(Self::client()?)
                .arg("--no-defaults")
                .args(["-h", "127.0.0.1", "-P", &self.port.to_string()])
                .args(["-u", "ember", &format!("-p{PASSWORD}"), "--local-infile=1"])
                .args(["-B", "-N", DATABASE, "-e", sql]),
            "mariadb",
        )
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn create_transactions(&self) -> Result<(), String> {
        self.sql(
            "CREATE TABLE transactions (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
             invoice_no VARCHAR(16) NOT NULL, stock_code VARCHAR(32) NOT NULL, description VARCHAR(255), \
             quantity INT NOT NULL, invoice_date DATETIME NOT NULL, unit_price DECIMAL(10,3) NOT NULL, \
             customer_id INT, country VARCHAR(64) NOT NULL)",
        )
        .map(|_| ())
    }

    fn load_transactions(&self, file: &Path) -> Result<(), String> {
        self.sql(&format!(
            "LOAD DATA LOCAL INFILE '{}' INTO TABLE transactions FIELDS TERMINATED BY '\\t' ({TRANSACTION_COLUMNS})",
            file.display()
        ))
        .map(|_| ())
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running PostgreSQL server with database `shop` owned by user `ember` (password
/// authentication over TCP). As root, the server runs as Debian's `postgres` user (through `setpriv`).
pub struct Postgres {
    child: Child,
    port: u16,
    dir: TempDir,
}

const PG_BIN: [&str; 3] = ["/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin"];

impl Postgres {
    /// `initdb` (password authentication for TCP), `postgres` on a free port, then the user
    /// and the database; every wait is bounded.
    ///
    /// # Errors
    /// When PostgreSQL is missing or does not start (with its log).
    pub fn start() -> Result<Self, String> {
        let initdb = which("initdb", &PG_BIN)?;
        let postgres = which("postgres", &PG_BIN)?;
        let dir = tempfile::Builder::new()
            .prefix("ember-postgres-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let root = is_root();
        let as_owner = |program: &Path| {
            if root {
                // setpriv execs the program (runuser would fork it and outlive a kill).
                let mut c = Command::new("setpriv");
                c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
                    .arg(program);
                c
            } else {
                Command::new(program)
            }
        };
        if root {
            run(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(dir.path()),
                "chown",
            )?;
        }
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).map_err(|e| e.to_string())?;
        if root {
            run(
                Command::new("chown").arg("postgres:postgres").arg(&pwfile),
                "chown",
            )?;
        }
        run(
            as_owner(&initdb)
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "ember",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ])
                .arg(format!("--pwfile={}", pwfile.display()))
                .args(["-E", "UTF8", "--locale=C"]),
            "initdb",
        )?;
        let port = free_port().map_err(|e| e.to_string())?;
        let log = dir.path().join("postgres.log");
        std::fs::File::create(&log).map_err(|e| e.to_string())?;
        if root {
            run(
                Command::new("chown").arg("postgres:postgres").arg(&log),
                "chown",
            )?;
        }
        let mut child = as_owner(&postgres)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1"])
            .arg("-k")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::options()
                    .append(true)
                    .open(&log)
                    .map_err(|e| e.to_string())?,
            )
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        if let Err(e) = wait_port(&mut child, "postgres", port, &log) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        let pg = Self { child, port, dir };
        // Accepting connections before recovery ends: retry the first statement briefly.
        wait_for(
            "postgres to answer",
            START_TIMEOUT,
            Duration::from_millis(200),
            || {
                Ok(pg
                    .psql("postgres", &format!("CREATE DATABASE {DATABASE}"))
                    .ok())
            },
        )?;
        Ok(pg)
    }

    fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        run(
            Command::new(which("psql", &PG_BIN)?)
                .env("PGPASSWORD", PASSWORD)
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "ember",
                ])
                .args(["-d", database, "-X", "-q", "-A", "-t", "-F", "\t"])
                .args(["-v", "ON_ERROR_STOP=1", "-c", sql]),
            "psql",
        )
    }

    /// The folder the server's files are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Server for Postgres {
    fn url(&self) -> String {
        format!(
            "postgres://ember@127.0.0.1:{}/{DATABASE}?sslmode=disable",
            self.port
        )
    }

    fn sql(&self, sql: &str) -> Result<String, String> {
        self.psql(DATABASE, sql)
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn create_transactions(&self) -> Result<(), String> {
        self.sql(
            "CREATE TABLE transactions (id BIGSERIAL PRIMARY KEY, invoice_no VARCHAR(16) NOT NULL, \
             stock_code VARCHAR(32) NOT NULL, description TEXT, quantity INTEGER NOT NULL, \
             invoice_date TIMESTAMP NOT NULL, unit_price NUMERIC(10,3) NOT NULL, customer_id INTEGER, \
             country VARCHAR(64) NOT NULL)",
        )
        .map(|_| ())
    }

    fn load_transactions(&self, file: &Path) -> Result<(), String> {
        // psql's \copy reads the file as the client; the server never sees the path.
        self.sql(&format!(
            "\\copy transactions ({TRANSACTION_COLUMNS}) FROM '{}'",
            file.display()
        ))
        .map(|_| ())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGTERM is "smart shutdown"; SIGKILL is enough for a throwaway folder.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
