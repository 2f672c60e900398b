//! Ordered rules that classify a request by its normalized path and method.
//!
//! Matching is case-sensitive, like Envoy's route matching. Prefixes match whole
//! segments: `/api` (or `/api/`) matches `/api` and `/api/...`, never `/apix`. An
//! exact path matches only itself: `/portal/login/` is not `/portal/login`. Both
//! choices can only send a request to a later rule or to the unmatched default,
//! never widen a `public` rule.

/// What a request is, and so who may make it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    /// Always passes: login, registration, static assets.
    Public,
    /// Portal pages: Approved developers only.
    Portal,
    /// Creating or changing credentials: Approved developers only.
    Credentials,
    /// The published APIs: Approved developers only.
    Api,
}

impl RouteClass {
    pub const ALL: [RouteClass; 4] = [
        RouteClass::Public,
        RouteClass::Portal,
        RouteClass::Credentials,
        RouteClass::Api,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Public => "public",
            RouteClass::Portal => "portal",
            RouteClass::Credentials => "credentials",
            RouteClass::Api => "api",
        }
    }

    pub fn is_protected(self) -> bool {
        self != RouteClass::Public
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    /// Stored without a trailing slash (`/` itself is stored as the empty string).
    Prefix(String),
}

impl PathMatch {
    /// `prefix` may be written with or without its trailing slash.
    pub fn prefix(prefix: &str) -> PathMatch {
        PathMatch::Prefix(prefix.trim_end_matches('/').to_string())
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(exact) => path == exact,
            PathMatch::Prefix(prefix) => match path.strip_prefix(prefix.as_str()) {
                Some(rest) => rest.is_empty() || rest.starts_with('/'),
                None => false,
            },
        }
    }

    /// True when every path `other` matches is matched by `self` too.
    pub fn covers(&self, other: &PathMatch) -> bool {
        match (self, other) {
            (_, PathMatch::Exact(path)) => self.matches(path),
            // A prefix covers another when it matches the other's own path.
            (PathMatch::Prefix(_), PathMatch::Prefix(inner)) => self.matches(inner),
            (PathMatch::Exact(_), PathMatch::Prefix(_)) => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub path: PathMatch,
    /// Upper-case method names; `None` matches every method.
    pub methods: Option<Vec<String>>,
    pub class: RouteClass,
}

impl Route {
    fn matches(&self, path: &str, method: &str) -> bool {
        self.path.matches(path)
            && self
                .methods
                .as_ref()
                .is_none_or(|methods| methods.iter().any(|m| m == method))
    }

    /// True when this route takes every request `later` would.
    pub fn shadows(&self, later: &Route) -> bool {
        let methods_covered = match (&self.methods, &later.methods) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(outer), Some(inner)) => inner.iter().all(|m| outer.contains(m)),
        };
        methods_covered && self.path.covers(&later.path)
    }
}

/// What happens to a request no route matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    Deny,
    Treat(RouteClass),
}

/// The outcome of classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    Class(RouteClass),
    /// No route matched and the default is to deny.
    Unrouted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    routes: Vec<Route>,
    unmatched: Unmatched,
}

impl RouteTable {
    /// Routes are validated by the configuration compiler; see `config`.
    pub fn new(routes: Vec<Route>, unmatched: Unmatched) -> RouteTable {
        RouteTable { routes, unmatched }
    }

    /// `path` must be normalized (see `path::normalize`). First match wins.
    pub fn classify(&self, path: &str, method: &str) -> Classification {
        match self.routes.iter().find(|route| route.matches(path, method)) {
            Some(route) => Classification::Class(route.class),
            None => match self.unmatched {
                Unmatched::Deny => Classification::Unrouted,
                Unmatched::Treat(class) => Classification::Class(class),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: PathMatch, methods: Option<&[&str]>, class: RouteClass) -> Route {
        Route {
            path,
            methods: methods.map(|m| m.iter().map(|s| s.to_string()).collect()),
            class,
        }
    }

    fn demo_table() -> RouteTable {
        RouteTable::new(
            vec![
                route(PathMatch::Exact("/portal/login".into()), None, RouteClass::Public),
                route(PathMatch::Exact("/portal/register".into()), None, RouteClass::Public),
                route(PathMatch::prefix("/portal/assets/"), None, RouteClass::Public),
                route(PathMatch::prefix("/portal/credentials"), None, RouteClass::Credentials),
                route(PathMatch::prefix("/portal/"), None, RouteClass::Portal),
                route(PathMatch::prefix("/api/"), None, RouteClass::Api),
            ],
            Unmatched::Deny,
        )
    }

    #[test]
    fn first_matching_route_wins() {
        let table = demo_table();
        assert_eq!(
            table.classify("/portal/login", "GET"),
            Classification::Class(RouteClass::Public)
        );
        assert_eq!(
            table.classify("/portal/assets/app.css", "GET"),
            Classification::Class(RouteClass::Public)
        );
        assert_eq!(
            table.classify("/portal/credentials", "POST"),
            Classification::Class(RouteClass::Credentials)
        );
        assert_eq!(
            table.classify("/portal/credentials/42", "DELETE"),
            Classification::Class(RouteClass::Credentials)
        );
        assert_eq!(
            table.classify("/portal/dashboard", "GET"),
            Classification::Class(RouteClass::Portal)
        );
        assert_eq!(
            table.classify("/portal", "GET"),
            Classification::Class(RouteClass::Portal)
        );
        assert_eq!(
            table.classify("/api/orders", "GET"),
            Classification::Class(RouteClass::Api)
        );
        assert_eq!(table.classify("/other", "GET"), Classification::Unrouted);
    }

    #[test]
    fn prefixes_match_whole_segments_and_exact_is_exact() {
        let table = demo_table();
        assert_eq!(table.classify("/apix", "GET"), Classification::Unrouted);
        assert_eq!(
            table.classify("/portal/assets-admin/x", "GET"),
            Classification::Class(RouteClass::Portal)
        );
        assert_eq!(
            table.classify("/portal/login/", "GET"),
            Classification::Class(RouteClass::Portal)
        );
        assert_eq!(
            table.classify("/portal/loginx", "GET"),
            Classification::Class(RouteClass::Portal)
        );
        // Case-sensitive: a case variant is not public.
        assert_eq!(
            table.classify("/portal/LOGIN", "GET"),
            Classification::Class(RouteClass::Portal)
        );
        assert_eq!(table.classify("/API/x", "GET"), Classification::Unrouted);
    }

    #[test]
    fn methods_restrict_a_route() {
        let table = RouteTable::new(
            vec![
                route(
                    PathMatch::prefix("/portal/credentials"),
                    Some(&["POST", "DELETE"]),
                    RouteClass::Credentials,
                ),
                route(PathMatch::prefix("/portal"), None, RouteClass::Portal),
            ],
            Unmatched::Treat(RouteClass::Public),
        );
        assert_eq!(
            table.classify("/portal/credentials", "POST"),
            Classification::Class(RouteClass::Credentials)
        );
        assert_eq!(
            table.classify("/portal/credentials", "GET"),
            Classification::Class(RouteClass::Portal)
        );
        assert_eq!(
            table.classify("/elsewhere", "GET"),
            Classification::Class(RouteClass::Public)
        );
    }

    #[test]
    fn root_prefix_matches_everything() {
        let root = PathMatch::prefix("/");
        assert!(root.matches("/"));
        assert!(root.matches("/anything/at/all"));
    }

    #[test]
    fn shadowing() {
        let all_portal = route(PathMatch::prefix("/portal"), None, RouteClass::Portal);
        let creds = route(PathMatch::prefix("/portal/credentials"), None, RouteClass::Credentials);
        let creds_post = route(
            PathMatch::prefix("/portal/credentials"),
            Some(&["POST"]),
            RouteClass::Credentials,
        );
        let login = route(PathMatch::Exact("/portal/login".into()), None, RouteClass::Public);
        assert!(all_portal.shadows(&creds));
        assert!(all_portal.shadows(&login));
        assert!(creds.shadows(&creds_post));
        assert!(!creds_post.shadows(&creds));
        assert!(!creds.shadows(&all_portal));
        assert!(!login.shadows(&all_portal));
        let root = route(PathMatch::prefix("/"), None, RouteClass::Api);
        assert!(root.shadows(&all_portal));
        assert!(!all_portal.shadows(&root));
        let apix = route(PathMatch::prefix("/apix"), None, RouteClass::Api);
        let api = route(PathMatch::prefix("/api"), None, RouteClass::Api);
        assert!(!api.shadows(&apix));
    }
}
