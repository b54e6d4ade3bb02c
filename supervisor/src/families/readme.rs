//! The README's "Ports" and "Where things are" tables against the family registry and the
//! workspace: a family, input, listening port or crate without its README row fails here, and
//! so does a row for something that does not exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use dk_proto::rpc::ListenerKind;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the supervisor crate sits in the repository")
        .to_path_buf()
}

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).expect("README.md at the repository root")
}

/// The text of the `## <title>` section (up to the next `## `).
fn section<'a>(text: &'a str, title: &str) -> &'a str {
    let head = format!("\n## {title}\n");
    let start = text
        .find(&head)
        .unwrap_or_else(|| panic!("README has no \"## {title}\" section"))
        + head.len();
    let rest = &text[start..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// The body rows of the markdown tables in `text`, as trimmed cells (header and separator
/// rows left out).
fn table_rows(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        if !in_table {
            in_table = true; // the header row
            continue;
        }
        if cells
            .iter()
            .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        {
            continue;
        }
        rows.push(cells);
    }
    rows
}

/// Every `` `code` `` span in `text`.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The families named as "worker `x`" in `text`.
fn workers_named(text: &str) -> BTreeSet<String> {
    text.split("worker `")
        .skip(1)
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_string)
        .collect()
}

/// The port numbers in a ports cell (`9530 / 9531`, `8125`, `—`).
fn ports_in(cell: &str) -> BTreeSet<u16> {
    cell.split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// What the README names a listener kind in the protocol column.
fn protocol_word(kind: &ListenerKind) -> &'static str {
    match kind {
        ListenerKind::Tcp => "TCP",
        ListenerKind::Udp => "UDP",
        ListenerKind::UnixDatagram => "unixgram",
        ListenerKind::UnixStream => "unix",
    }
}

/// Every listener a family's samples claim, and with an empty config (its defaults):
/// port (0 for Unix sockets) → the protocol words.
fn claimed(family: &dyn dk_worker::Family) -> BTreeMap<u16, BTreeSet<&'static str>> {
    let mut out: BTreeMap<u16, BTreeSet<&'static str>> = BTreeMap::new();
    let mut instances: Vec<(String, String)> = family
        .inputs()
        .iter()
        .map(|i| (i.to_string(), String::new()))
        .collect();
    for (input, sample) in family.samples() {
        let table: toml::Table = toml::from_str(sample)
            .unwrap_or_else(|e| panic!("the {input} sample does not parse: {e}"));
        let Some(toml::Value::Table(inputs)) = table.get("inputs") else {
            continue;
        };
        let list = match inputs.get(*input) {
            Some(toml::Value::Array(a)) => a.clone(),
            Some(v @ toml::Value::Table(_)) => vec![v.clone()],
            _ => Vec::new(),
        };
        for v in list {
            if let toml::Value::Table(t) = v {
                instances.push((input.to_string(), toml::to_string(&t).unwrap()));
            }
        }
    }
    for (input, text) in instances {
        for l in family.listeners(&input, &text) {
            let port = match l.kind {
                ListenerKind::Tcp | ListenerKind::Udp => l
                    .address
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("no port in {:?}", l.address)),
                _ => 0,
            };
            out.entry(port).or_default().insert(protocol_word(&l.kind));
        }
    }
    out
}

#[test]
fn the_ports_table_has_a_row_for_every_port_a_family_listens_on_and_no_other() {
    let text = readme();
    let ports = section(&text, "Ports");
    let rows = table_rows(ports);
    assert!(rows.len() > 5, "the Ports table was not found: {rows:?}");
    let families = super::all();
    let names: BTreeSet<String> = families.iter().map(|f| f.name().to_string()).collect();

    let named = workers_named(ports);
    for name in &names {
        assert!(
            named.contains(name),
            "README \"Ports\" never names worker `{name}`: add its row (or, for a family that \
             listens on nothing, name it on the line of inputs without a port)"
        );
    }
    for name in &named {
        assert!(
            names.contains(name),
            "README \"Ports\" names worker `{name}`, which is no family of supervisor/src/families.rs"
        );
    }

    let spans: BTreeSet<&str> = code_spans(ports).into_iter().collect();
    for family in &families {
        for input in family.inputs() {
            let as_table = format!("[[inputs.{input}]]");
            let as_list = format!("[[inputs.{input}]] ");
            assert!(
                spans.contains(input)
                    || spans.contains(as_table.as_str())
                    || spans.iter().any(|s| s.starts_with(&as_list)),
                "README \"Ports\" does not mention input `{input}` (family {}): name it in its \
                 row or on the line of inputs without a port",
                family.name()
            );
        }
    }

    for family in &families {
        let claims = claimed(*family);
        let rows_of: Vec<&Vec<String>> = rows
            .iter()
            .filter(|r| workers_named(&r.join("|")).contains(family.name()))
            .collect();
        let mut listed: BTreeSet<u16> = BTreeSet::new();
        for row in &rows_of {
            assert!(
                row[3].contains("**served**"),
                "README row {row:?} names worker `{}` but does not say **served**",
                family.name()
            );
            listed.extend(ports_in(&row[0]));
        }
        for (port, words) in &claims {
            if *port == 0 {
                continue;
            }
            let row = rows_of
                .iter()
                .find(|r| ports_in(&r[0]).contains(port))
                .unwrap_or_else(|| {
                    panic!(
                        "family {} listens on {port} ({words:?}) by default or in its sample, \
                         but no README \"Ports\" row with worker `{}` lists that port",
                        family.name(),
                        family.name()
                    )
                });
            for w in words {
                assert!(
                    row[1].contains(w),
                    "README row {row:?}: family {} listens on {port} over {w}",
                    family.name()
                );
            }
        }
        for (port, words) in claims.iter().filter(|(p, _)| **p == 0) {
            let _ = port;
            for w in words {
                assert!(
                    rows_of.iter().any(|r| r[1].contains(w)),
                    "family {} listens on a {w} socket, but no README row of worker `{}` says {w}",
                    family.name(),
                    family.name()
                );
            }
        }
        for port in listed {
            assert!(
                claims.contains_key(&port),
                "README \"Ports\" lists {port} for worker `{}`, which does not listen on it \
                 by default or in its sample",
                family.name()
            );
        }
    }

    // A port a family serves must not also be listed as "not yet".
    let served: BTreeSet<u16> = families
        .iter()
        .flat_map(|f| claimed(*f).into_keys())
        .collect();
    for row in rows.iter().filter(|r| r[3].contains("not yet")) {
        for port in ports_in(&row[0]) {
            assert!(
                !served.contains(&port),
                "README row {row:?} says \"not yet\" but a family listens on {port}"
            );
        }
    }
}

/// `a/b/` of a folder cell such as `` `workers/host/` ``.
fn folder_of(cell: &str) -> Option<String> {
    let s = code_spans(cell).into_iter().next()?;
    Some(s.trim_end_matches('/').to_string())
}

#[test]
fn the_folder_table_has_a_row_for_every_workspace_crate_and_family_and_no_other() {
    let text = readme();
    let rows = table_rows(section(&text, "Where things are"));
    let folders: BTreeMap<String, String> = rows
        .iter()
        .filter_map(|r| Some((folder_of(&r[0])?, r.get(1).cloned().unwrap_or_default())))
        .collect();
    assert!(
        folders.len() > 5,
        "the folder table was not found: {rows:?}"
    );

    for folder in folders.keys() {
        assert!(
            repo().join(folder).is_dir(),
            "README \"Where things are\" has a row for `{folder}/`, which does not exist"
        );
    }

    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo().join("Cargo.toml")).unwrap()).unwrap();
    let members: Vec<String> = manifest["workspace"]["members"]
        .as_array()
        .expect("workspace.members")
        .iter()
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect();
    assert!(members.len() > 5, "{members:?}");
    for member in &members {
        assert!(
            folders.contains_key(member),
            "workspace crate `{member}` has no row `{member}/` in README \"Where things are\""
        );
    }
    // Crate folders in the table are workspace members.
    for folder in folders.keys() {
        if repo().join(folder).join("Cargo.toml").is_file() {
            assert!(
                members.contains(folder),
                "README lists `{folder}/` as a crate, but it is not a workspace member"
            );
        }
    }

    for family in super::all() {
        let name = family.name();
        let row = folders.iter().find(|(f, what)| {
            f.starts_with("workers/") && what.contains(&format!("family `{name}`"))
        });
        assert!(
            row.is_some(),
            "family {name} has no `workers/<crate>/` row saying \"family `{name}`\" in README \"Where things are\""
        );
    }
    for (folder, what) in &folders {
        for named in what
            .split("family `")
            .skip(1)
            .filter_map(|r| r.split('`').next())
        {
            assert!(
                super::by_name(named).is_some(),
                "README row `{folder}/` names family `{named}`, which is not in supervisor/src/families.rs"
            );
        }
    }
}

/// Every `.rs`, `.md`, `.sh`, `.py` and `.conf` file of the repository (no `target/`, no
/// hidden folders).
fn text_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "__pycache__" {
                text_files(&path, out);
            }
        } else if ["rs", "md", "sh", "py", "conf"]
            .iter()
            .any(|ext| path.extension().is_some_and(|e| e == *ext))
        {
            out.push(path);
        }
    }
}

#[test]
fn no_file_points_at_a_spec_section_outside_the_repository() {
    let mut files = Vec::new();
    text_files(&repo(), &mut files);
    assert!(files.len() > 50, "{} files", files.len());
    // Built from parts so that this file does not match itself; `\u{a7}` is the section sign.
    let needles = [
        ["datakit-supervisor", ".md"].concat(),
        ["datakit-inputs", ".md"].concat(),
        ["shared", "/spec"].concat(),
    ];
    let mut found = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            if needles.iter().any(|needle| line.contains(needle.as_str()))
                || line.contains('\u{a7}')
            {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "references to a spec that is not in the repository (copy the facts into docs/ or drop \
         the reference):\n{}",
        found.join("\n")
    );
}
