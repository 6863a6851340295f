//! The report: one [`Check`] per step (status, finding, fix) and how a line prints.

use std::fmt;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, but will not for long (a drifting clock): does not fail the run.
    Warn,
    Fail,
    /// Not applicable, or not reachable because an earlier check failed.
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

/// One check's outcome: what was found and, when it failed, the likely fix.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub finding: String,
    pub fix: Option<String>,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<4}  {:<16}  {}",
            self.status.label(),
            self.name,
            self.finding
        )?;
        if let Some(fix) = &self.fix {
            write!(f, "; fix: {fix}")?;
        }
        Ok(())
    }
}

/// Every check of one run, in order.
#[derive(Debug, Clone, Default)]
pub struct DoctorReport {
    pub checks: Vec<Check>,
}

impl DoctorReport {
    /// No check failed (warnings and skips pass).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }

    /// The check named `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    pub(super) fn push(&mut self, name: &'static str, status: Status, finding: impl Into<String>) {
        self.checks.push(Check {
            name,
            status,
            finding: finding.into(),
            fix: None,
        });
    }

    pub(super) fn ok(&mut self, name: &'static str, finding: impl Into<String>) {
        self.push(name, Status::Ok, finding);
    }

    pub(super) fn skip(&mut self, name: &'static str, why: impl Into<String>) {
        self.push(name, Status::Skip, why);
    }

    pub(super) fn fail(
        &mut self,
        name: &'static str,
        finding: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.checks.push(Check {
            name,
            status: Status::Fail,
            finding: finding.into(),
            fix: Some(fix.into()),
        });
    }

    pub(super) fn add(&mut self, check: Check) {
        self.checks.push(check);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::doctor::STORAGE;

    #[test]
    fn a_check_line_has_status_name_finding_and_fix() {
        let c = Check {
            name: STORAGE,
            status: Status::Fail,
            finding: "403 SignatureDoesNotMatch".into(),
            fix: Some("check SPACES_SECRET_ACCESS_KEY".into()),
        };
        assert_eq!(
            c.to_string(),
            "FAIL  storage access    403 SignatureDoesNotMatch; fix: check SPACES_SECRET_ACCESS_KEY"
        );
    }
}
