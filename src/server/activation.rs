//! Systemd socket activation: the listening sockets a service manager passed to the
//! process (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`, the protocol of
//! `sd_listen_fds(3)`), taken instead of binding. The manager holds the sockets across a
//! restart, so connections queue in the kernel while no process accepts them.
//!
//! The rules, as `sd_listen_fds` keeps them: no `LISTEN_PID`, or one naming another process
//! (the variables were inherited), means nothing was passed; a malformed variable, a passed
//! fd that is not an open listening TCP socket, or names that do not say which socket is
//! which, stop the start with a message naming the variable. The passed fds start at 3.
//! They are named `public` and `internal` by `LISTEN_FDNAMES` (systemd's
//! `FileDescriptorName=`), or, when no name is one of those, taken in that order. The
//! internal one may be left out: `server.internal_listen` is then bound as usual. The
//! variables are removed once read, so nothing the gateway starts inherits them.

use std::os::fd::{FromRawFd, RawFd};

/// The first passed fd (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// The listening sockets passed to the gateway.
#[derive(Debug)]
pub struct Passed {
    /// `[server] listen`'s socket.
    pub public: std::net::TcpListener,
    /// `[server] internal_listen`'s socket, when passed.
    pub internal: Option<std::net::TcpListener>,
}

/// Why the passed sockets cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("{var}={value:?} is not {what}")]
    Malformed {
        var: &'static str,
        value: String,
        what: &'static str,
    },
    #[error("LISTEN_FDNAMES names {names} sockets but LISTEN_FDS passes {fds}")]
    NameCount { names: usize, fds: usize },
    #[error(
        "LISTEN_FDNAMES: socket {fd} is named {name:?}; name them \"public\" and \"internal\" \
         (FileDescriptorName=)"
    )]
    UnknownName { fd: RawFd, name: String },
    #[error("LISTEN_FDNAMES: two sockets are named {0:?}")]
    Duplicate(&'static str),
    #[error("LISTEN_FDNAMES names no \"public\" socket")]
    NoPublic,
    #[error("LISTEN_FDS passes {0} sockets; the gateway takes at most 2 (public, internal)")]
    TooMany(usize),
    #[error("passed fd {fd} ({role}) {problem}")]
    BadSocket {
        fd: RawFd,
        role: &'static str,
        problem: String,
    },
}

/// Which listener a passed fd is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Public,
    Internal,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Public => "public",
            Role::Internal => "internal",
        }
    }
}

/// Reads the activation variables of this process's environment, removes them, and
/// returns the passed sockets (`None` when nothing was passed to this process).
///
/// Call it before any other thread starts: it changes the process environment.
pub fn take_from_env() -> Result<Option<Passed>, ActivationError> {
    let var = |name: &str| std::env::var(name).ok();
    let (pid, fds, names) = (var("LISTEN_PID"), var("LISTEN_FDS"), var("LISTEN_FDNAMES"));
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    let roles = match assign(
        pid.as_deref(),
        fds.as_deref(),
        names.as_deref(),
        std::process::id(),
    )? {
        Some(roles) => roles,
        None => return Ok(None),
    };
    // Every fd is checked before any is taken: an error leaves them all alone.
    for &(fd, role) in &roles {
        check_listening_tcp(fd).map_err(|problem| ActivationError::BadSocket {
            fd,
            role: role.name(),
            problem,
        })?;
    }
    let mut public = None;
    let mut internal = None;
    for (fd, role) in roles {
        // SAFETY: `fd` is an open listening socket this process was handed (checked
        // above) and nothing else in the process owns it: each fd is taken once, here.
        let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        match role {
            Role::Public => public = Some(listener),
            Role::Internal => internal = Some(listener),
        }
    }
    let public = public.ok_or(ActivationError::NoPublic)?;
    Ok(Some(Passed { public, internal }))
}

/// Which passed fd is which listener, from the variables' values; `None` when nothing
/// was passed to process `me`. Touches no fd.
fn assign(
    pid: Option<&str>,
    fds: Option<&str>,
    names: Option<&str>,
    me: u32,
) -> Result<Option<Vec<(RawFd, Role)>>, ActivationError> {
    let Some(pid) = pid else { return Ok(None) };
    let pid: u32 = match pid.trim().parse() {
        Ok(p) if p > 0 => p,
        _ => {
            return Err(ActivationError::Malformed {
                var: "LISTEN_PID",
                value: pid.into(),
                what: "a process id",
            })
        }
    };
    if pid != me {
        return Ok(None);
    }
    let Some(fds) = fds else { return Ok(None) };
    let count: usize = fds.trim().parse().map_err(|_| ActivationError::Malformed {
        var: "LISTEN_FDS",
        value: fds.into(),
        what: "a number of sockets",
    })?;
    if count == 0 {
        return Ok(None);
    }
    if count > 2 {
        return Err(ActivationError::TooMany(count));
    }
    let fd_of = |i: usize| FIRST_FD + i as RawFd;
    let names: Vec<&str> = names.map(|n| n.split(':').collect()).unwrap_or_default();
    let named = names.iter().any(|n| *n == "public" || *n == "internal");
    if !named {
        // No name says which is which (systemd names every socket after its unit unless
        // told otherwise): public first, then internal.
        let order = [Role::Public, Role::Internal];
        return Ok(Some((0..count).map(|i| (fd_of(i), order[i])).collect()));
    }
    if names.len() != count {
        return Err(ActivationError::NameCount {
            names: names.len(),
            fds: count,
        });
    }
    let mut roles: Vec<(RawFd, Role)> = Vec::with_capacity(count);
    for (i, name) in names.iter().enumerate() {
        let role = match *name {
            "public" => Role::Public,
            "internal" => Role::Internal,
            other => {
                return Err(ActivationError::UnknownName {
                    fd: fd_of(i),
                    name: other.into(),
                })
            }
        };
        if roles.iter().any(|(_, r)| *r == role) {
            return Err(ActivationError::Duplicate(role.name()));
        }
        roles.push((fd_of(i), role));
    }
    if !roles.iter().any(|(_, r)| *r == Role::Public) {
        return Err(ActivationError::NoPublic);
    }
    Ok(Some(roles))
}

/// Whether `fd` is an open, listening TCP (IPv4 or IPv6) stream socket; marks it
/// close-on-exec as `sd_listen_fds` does.
fn check_listening_tcp(fd: RawFd) -> Result<(), String> {
    // SAFETY: fcntl on an fd number only reads or sets its descriptor flags; a closed fd
    // gives EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(format!("is not open: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
    let option = |name: libc::c_int| -> Result<libc::c_int, String> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `value`, an int.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::ENOTSOCK) {
                "is not a socket".into()
            } else {
                format!("cannot be inspected: {e}")
            });
        }
        Ok(value)
    };
    if option(libc::SO_TYPE)? != libc::SOCK_STREAM {
        return Err("is not a stream socket (ListenStream=)".into());
    }
    let domain = option(libc::SO_DOMAIN)?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return Err("is not a TCP socket (a Unix socket?)".into());
    }
    if option(libc::SO_ACCEPTCONN)? == 0 {
        return Err("is not listening".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u32 = 4242;

    fn roles(
        fds: &str,
        names: Option<&str>,
    ) -> Result<Option<Vec<(RawFd, Role)>>, ActivationError> {
        assign(Some("4242"), Some(fds), names, ME)
    }

    #[test]
    fn nothing_is_passed_without_listen_pid_or_listen_fds() {
        assert!(assign(None, Some("2"), None, ME).unwrap().is_none());
        assert!(assign(Some("4242"), None, None, ME).unwrap().is_none());
        assert!(roles("0", None).unwrap().is_none());
    }

    #[test]
    fn sockets_passed_to_another_process_are_ignored() {
        assert!(assign(Some("4243"), Some("2"), None, ME).unwrap().is_none());
    }

    #[test]
    fn unnamed_sockets_are_public_then_internal() {
        let r = roles("2", None).unwrap().unwrap();
        assert_eq!(r, vec![(3, Role::Public), (4, Role::Internal)]);
        // systemd's default names (the unit's) say nothing: the order decides.
        let r = roles("1", Some("label-gateway.socket")).unwrap().unwrap();
        assert_eq!(r, vec![(3, Role::Public)]);
    }

    #[test]
    fn names_decide_whatever_the_order() {
        let r = roles("2", Some("internal:public")).unwrap().unwrap();
        assert_eq!(r, vec![(3, Role::Internal), (4, Role::Public)]);
        let r = roles("1", Some("public")).unwrap().unwrap();
        assert_eq!(r, vec![(3, Role::Public)]);
    }

    #[test]
    fn malformed_variables_are_start_up_errors_naming_the_variable() {
        let e = assign(Some("abc"), Some("2"), None, ME).unwrap_err();
        assert!(e.to_string().starts_with("LISTEN_PID="), "{e}");
        let e = roles("two", None).unwrap_err();
        assert!(e.to_string().starts_with("LISTEN_FDS="), "{e}");
        let e = roles("-1", None).unwrap_err();
        assert!(e.to_string().starts_with("LISTEN_FDS="), "{e}");
    }

    #[test]
    fn names_that_do_not_say_which_socket_is_which_are_refused() {
        assert!(matches!(
            roles("2", Some("public:metrics")),
            Err(ActivationError::UnknownName { fd: 4, .. })
        ));
        assert!(matches!(
            roles("2", Some("public:public")),
            Err(ActivationError::Duplicate("public"))
        ));
        assert!(matches!(
            roles("1", Some("internal")),
            Err(ActivationError::NoPublic)
        ));
        assert!(matches!(
            roles("2", Some("public")),
            Err(ActivationError::NameCount { names: 1, fds: 2 })
        ));
        assert!(matches!(roles("3", None), Err(ActivationError::TooMany(3))));
    }

    #[test]
    fn only_an_open_listening_tcp_socket_passes_the_check() {
        use std::os::fd::AsRawFd;
        let listening = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(check_listening_tcp(listening.as_raw_fd()), Ok(()));
        let connected = std::net::TcpStream::connect(listening.local_addr().unwrap()).unwrap();
        assert_eq!(
            check_listening_tcp(connected.as_raw_fd()).unwrap_err(),
            "is not listening"
        );
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(check_listening_tcp(udp.as_raw_fd())
            .unwrap_err()
            .contains("stream"));
        let file = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(
            check_listening_tcp(file.as_raw_fd()).unwrap_err(),
            "is not a socket"
        );
        let (unix, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(check_listening_tcp(unix.as_raw_fd())
            .unwrap_err()
            .contains("Unix"));
    }
}
