//! The layers of the crate, bottom to top, as docs/architecture.md draws
//! them: a module imports only modules below it (its own submodules
//! aside), so there is no import circle and I/O never reaches up into the
//! executor or the run. The test below reads `src/` and fails on an arrow
//! that points up or on a module missing from [`ORDER`].

/// Every top-level module, from the bottom up.
pub const ORDER: [&str; 23] = [
    // vocabulary: no I/O, no decision
    "model",
    "exit",
    "label_selector",
    "failure",
    "error",
    "config",
    // pure: views, the decision, the plan, patches, rendering
    "view",
    "blocks",
    "decide",
    "patches",
    "plan",
    "report",
    "explain",
    // I/O, taking what it needs (a filter, a deadline) as arguments
    "interrupt",
    "kube_io",
    "notify",
    // acting: every write, Event and per-object log line
    "execute",
    // orchestration
    "run",
    // the roof, just below `main`
    "cli",
    "app",
    // this file, and the crate root that declares every module
    "layers",
    "lib",
    "main",
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    use super::ORDER;

    /// Every `.rs` file under `dir`.
    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The modules `text` names as `crate::<module>`, outside comments and
    /// test code (tests may reach anywhere).
    fn imports(text: &str) -> BTreeSet<String> {
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let mut found = BTreeSet::new();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let name: String = line[i + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
        found
    }

    #[test]
    fn every_module_imports_only_modules_below_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut paths = Vec::new();
        files(&src, &mut paths);
        assert!(paths.len() > 20, "read src/: {paths:?}");
        let rank = |module: &str| ORDER.iter().position(|m| *m == module);
        let mut wrong = Vec::new();
        for path in paths {
            let relative = path.strip_prefix(&src).unwrap_or(&path);
            let module = relative
                .components()
                .next()
                .map(|c| {
                    c.as_os_str()
                        .to_string_lossy()
                        .trim_end_matches(".rs")
                        .to_owned()
                })
                .unwrap_or_default();
            let test_only = relative.ends_with("tests.rs") || relative.ends_with("fixtures.rs");
            let Some(own) = rank(&module) else {
                wrong.push(format!("{module} is not in layers::ORDER"));
                continue;
            };
            if test_only {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for import in imports(&text) {
                if import == module {
                    continue;
                }
                match rank(&import) {
                    Some(r) if r < own => {}
                    _ => wrong.push(format!(
                        "{} imports crate::{import}, which is not below {module}",
                        relative.display()
                    )),
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "arrows pointing up:\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn an_upward_import_is_found() {
        let found =
            imports("use crate::run::Interrupt;\n// crate::app\n#[cfg(test)]\nuse crate::main;");
        assert_eq!(found, BTreeSet::from(["run".to_owned()]));
    }
}
