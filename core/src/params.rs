//! Job parameters: names declared in the manifest's `[params]` with their defaults, overridden on
//! the command line with `--set name=value`, and substituted into manifest paths and SQL files
//! wherever `${name}` appears (`$${` writes a literal `${`).
//!
//! Rules (checked, each with a one-line error):
//! - `--set` may only name declared parameters (like dbt's `vars`, unlike a free-form map);
//! - every `${name}` must be declared;
//! - values cannot contain line breaks, so a SQL error's line number in the rendered text is the
//!   line number in the file the user edits.

use std::collections::BTreeMap;

use crate::error::{Error, Location, Result};

/// The resolved parameters of one job run: declared names → values (default or `--set`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Params {
    job: String,
    values: BTreeMap<String, String>,
}

impl Params {
    /// Parameters of `job` with their manifest defaults.
    pub fn new(job: impl Into<String>, defaults: BTreeMap<String, String>) -> Self {
        Self {
            job: job.into(),
            values: defaults,
        }
    }

    /// Parses one `--set` argument, `name=value` (the value may contain `=`).
    ///
    /// # Errors
    /// [`Error::BadSetting`] when there is no `=`, the name is empty, or the value has a line
    /// break.
    pub fn parse_setting(arg: &str) -> Result<(String, String)> {
        match arg.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() && !value.contains(['\n', '\r']) => {
                Ok((name.trim().to_string(), value.to_string()))
            }
            _ => Err(Error::BadSetting(arg.to_string())),
        }
    }

    /// Parses every `--set` argument of a command line ([`Params::parse_setting`]).
    ///
    /// # Errors
    /// The first bad argument's [`Error::BadSetting`].
    pub fn parse_settings(args: &[String]) -> Result<Vec<(String, String)>> {
        args.iter().map(|a| Self::parse_setting(a)).collect()
    }

    /// Overrides declared parameters with `--set` values, in order (the last one wins).
    ///
    /// # Errors
    /// [`Error::UnknownParameter`] when a name is not declared in the manifest.
    pub fn apply(&mut self, settings: &[(String, String)]) -> Result<()> {
        for (name, value) in settings {
            match self.values.get_mut(name) {
                Some(slot) => *slot = value.clone(),
                None => {
                    return Err(Error::UnknownParameter {
                        job: self.job.clone(),
                        name: name.clone(),
                        declared: self.declared(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The value of a declared parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// All parameters, sorted by name (for reports).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The declared names, comma-separated (for error messages).
    pub fn declared(&self) -> String {
        if self.values.is_empty() {
            return "(none)".to_string();
        }
        self.values
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Substitutes every `${name}` in `text`. `locate` turns a byte offset of `text` into the
    /// place the user edits, for errors.
    ///
    /// # Errors
    /// [`Error::UndefinedReference`] for an undeclared name; [`Error::Manifest`] for a `${`
    /// without its closing `}`.
    pub fn render(&self, text: &str, locate: &dyn Fn(usize) -> Location) -> Result<String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut offset = 0;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i..];
            if let Some(tail) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = tail;
                offset += i + 3;
            } else if let Some(tail) = after.strip_prefix("${") {
                let Some(end) = tail.find('}') else {
                    return Err(Error::Manifest {
                        location: locate(offset + i),
                        message: "`${` without a closing `}`".to_string(),
                    });
                };
                let name = tail[..end].trim();
                match self.values.get(name) {
                    Some(value) => out.push_str(value),
                    None => {
                        return Err(Error::UndefinedReference {
                            location: locate(offset + i),
                            name: name.to_string(),
                            declared: self.declared(),
                        });
                    }
                }
                rest = &tail[end + 1..];
                offset += i + 2 + end + 1;
            } else {
                out.push('$');
                rest = &after[1..];
                offset += i + 1;
            }
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        let mut defaults = BTreeMap::new();
        defaults.insert("input".to_string(), "data/a.csv".to_string());
        defaults.insert("fmt".to_string(), "%Y".to_string());
        Params::new("job1", defaults)
    }

    fn render(p: &Params, text: &str) -> Result<String> {
        p.render(text, &|o| Location::of_offset("f.sql", text, o))
    }

    #[test]
    fn substitutes_and_escapes() {
        let p = params();
        assert_eq!(
            render(&p, "x ${input} y '${ fmt }' $${input} $1").expect("ok"),
            "x data/a.csv y '%Y' ${input} $1"
        );
    }

    #[test]
    fn undefined_reference_points_at_line_and_column() {
        let p = params();
        let err = render(&p, "select 1\nfrom ${nope}").expect_err("undefined");
        assert_eq!(
            err.to_string(),
            "f.sql:2:6: unknown parameter `${nope}`; declared: fmt, input"
        );
    }

    #[test]
    fn unterminated_reference() {
        let err = render(&params(), "a ${input").expect_err("unterminated");
        assert!(
            err.to_string().starts_with("f.sql:1:3: `${` without"),
            "{err}"
        );
    }

    #[test]
    fn overrides_only_declared_names() {
        let mut p = params();
        p.apply(&[Params::parse_setting("input=b=c.csv").expect("setting")])
            .expect("apply");
        assert_eq!(p.get("input"), Some("b=c.csv"));
        let err = p
            .apply(&[("inptu".into(), "x".into())])
            .expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "unknown parameter `inptu` for job job1; it declares: fmt, input"
        );
    }

    #[test]
    fn bad_settings() {
        for bad in ["noequals", "=x", "a=b\nc"] {
            assert!(Params::parse_setting(bad).is_err(), "{bad}");
        }
        assert_eq!(Params::parse_setting("a=").expect("empty value").1, "");
    }
}
