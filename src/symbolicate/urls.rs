//! Which uploaded URLs a frame's `abs_path` matches, and how a map reference is resolved
//! against the URL of the file that names it.
//!
//! Uploads name files by full URL or by `~/path`, where `~` stands for any scheme and host.
//! A frame at `https://h/static/app.js?v=3#x` matches, in this order,
//! `https://h/static/app.js?v=3`, `https://h/static/app.js`, `~/static/app.js?v=3`,
//! `~/static/app.js` (the fragment never counts).

/// The upload URLs a frame's `abs_path` matches, best first, without duplicates.
pub fn candidates(abs_path: &str) -> Vec<String> {
    let url = abs_path.split('#').next().unwrap_or_default();
    let without_query = url.split('?').next().unwrap_or_default();
    let mut out: Vec<String> = Vec::with_capacity(4);
    let mut push = |s: String| {
        if !s.is_empty() && !out.contains(&s) {
            out.push(s);
        }
    };
    push(url.to_string());
    push(without_query.to_string());
    if let Some(path) = tilde_path(url) {
        push(format!("~{path}"));
        push(format!("~{}", path.split('?').next().unwrap_or_default()));
    }
    out
}

/// The path (with query) of an absolute URL, or of a path that is already one (`/x.js`).
fn tilde_path(url: &str) -> Option<&str> {
    if let Some((_, rest)) = url.split_once("://") {
        // After the host: `https://h/p` → `/p`; `app:///p` → `/p`.
        return rest.find('/').map(|i| &rest[i..]);
    }
    if let Some(rest) = url.strip_prefix("~/") {
        return Some(&url[url.len() - rest.len() - 1..]);
    }
    url.starts_with('/').then_some(url)
}

/// Resolves `reference` (a `Sourcemap` header or `sourceMappingURL`) against `base`, the URL
/// the file was uploaded or found at: absolute references stay, `/x` keeps the base's origin,
/// others are relative to the base's directory (with `.` and `..` resolved).
pub fn join(base: &str, reference: &str) -> String {
    if reference.contains("://") || reference.starts_with("data:") {
        return reference.to_string();
    }
    let base = base.split(['#', '?']).next().unwrap_or_default();
    let (origin, path) = split_origin(base);
    if let Some(rest) = reference.strip_prefix("~/") {
        return format!("~/{rest}");
    }
    let joined = if reference.starts_with('/') {
        reference.to_string()
    } else {
        let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
        format!("{dir}{reference}")
    };
    format!("{origin}{}", normalize_path(&joined))
}

/// `("https://h", "/a/b.js")`, `("~", "/a/b.js")`, or `("", "a/b.js")` for a bare path.
fn split_origin(url: &str) -> (&str, &str) {
    if let Some(i) = url.find("://") {
        let after = i + 3;
        return match url[after..].find('/') {
            Some(j) => url.split_at(after + j),
            None => (url, "/"),
        };
    }
    if url.starts_with("~/") {
        return url.split_at(1);
    }
    ("", url)
}

/// Resolves `.` and `..` segments; `..` never climbs above the root.
fn normalize_path(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

/// A map's `sources` entry as a file name to show: `webpack://app/./src/a.js` → `src/a.js`,
/// `../src/a.js` → `src/a.js`.
pub fn display_name(source: &str) -> String {
    let path = match source.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or(rest, |(_, p)| p),
        None => source,
    };
    let mut s = path;
    loop {
        if let Some(r) = s.strip_prefix("../") {
            s = r;
        } else if let Some(r) = s.strip_prefix("./") {
            s = r;
        } else if let Some(r) = s.strip_prefix('/') {
            s = r;
        } else {
            break;
        }
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilde_candidates_drop_fragment_then_query() {
        assert_eq!(
            candidates("https://h/static/app.js?v=3#x"),
            [
                "https://h/static/app.js?v=3",
                "https://h/static/app.js",
                "~/static/app.js?v=3",
                "~/static/app.js"
            ]
        );
        assert_eq!(
            candidates("http://127.0.0.1:4000/app.min.js"),
            ["http://127.0.0.1:4000/app.min.js", "~/app.min.js"]
        );
        assert_eq!(
            candidates("app:///dist/x.js"),
            ["app:///dist/x.js", "~/dist/x.js"]
        );
        assert_eq!(candidates("/srv/x.js"), ["/srv/x.js", "~/srv/x.js"]);
        assert_eq!(candidates("~/a.js"), ["~/a.js"]);
        assert!(candidates("").is_empty());
        assert_eq!(candidates("<anonymous>"), ["<anonymous>"]);
    }

    #[test]
    fn map_references_resolve_against_the_file() {
        assert_eq!(
            join("~/static/app.min.js", "app.min.js.map"),
            "~/static/app.min.js.map"
        );
        assert_eq!(
            join("https://h/static/js/app.min.js?v=1", "../maps/app.map"),
            "https://h/static/maps/app.map"
        );
        assert_eq!(
            join("https://h/a/app.js", "/m/app.map"),
            "https://h/m/app.map"
        );
        assert_eq!(
            join("https://h/a/app.js", "https://cdn/x.map"),
            "https://cdn/x.map"
        );
        assert_eq!(join("~/a/b.js", "../../../x.map"), "~/x.map");
        assert_eq!(join("~/a/b.js", "./b.js.map"), "~/a/b.js.map");
    }

    #[test]
    fn source_names_lose_prefixes() {
        assert_eq!(display_name("../src/app.js"), "src/app.js");
        assert_eq!(display_name("webpack://shop/./src/app.js"), "src/app.js");
        assert_eq!(display_name("src/app.js"), "src/app.js");
    }
}
