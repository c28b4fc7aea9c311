//! Short names for the Hub repositories aivideo runs, with what a person needs before
//! downloading one: its size and its licence.

/// One built-in alias.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Alias {
    pub name: &'static str,
    /// The Hub repository it stands for.
    pub repo: &'static str,
    pub family: &'static str,
    /// Parameters of all components together.
    pub parameters: &'static str,
    /// Disk space the components take at most (stored as f32; less where the repository
    /// stores a component in 16 bits), from the parameter counts.
    pub max_size_gb: f64,
    pub license: &'static str,
    pub description: &'static str,
}

/// The aliases, as `aivideo models list` shows them and `--model` accepts them.
pub const ALIASES: &[Alias] = &[
    Alias {
        name: "wan2.1-t2v-1.3b",
        repo: "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        family: "wan",
        parameters: "7.2 B (transformer 1.42 B, UMT5-XXL encoder 5.68 B, VAE 0.13 B)",
        max_size_gb: 28.9,
        license: "Apache-2.0",
        description: "Wan2.1 text-to-video, 832×480, 81 frames at 16 fps",
    },
    Alias {
        name: "wan2.1-t2v-14b",
        repo: "Wan-AI/Wan2.1-T2V-14B-Diffusers",
        family: "wan",
        parameters: "about 19.8 B (transformer about 14 B, UMT5-XXL encoder 5.68 B, VAE 0.13 B)",
        max_size_gb: 79.2,
        license: "Apache-2.0",
        description: "Wan2.1 text-to-video, up to 1280×720, 81 frames at 16 fps",
    },
];

/// The alias called `name` (case-insensitive).
pub fn find(name: &str) -> Option<&'static Alias> {
    ALIASES.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_unique_lower_case_and_name_valid_repositories() {
        for (i, a) in ALIASES.iter().enumerate() {
            assert_eq!(a.name, a.name.to_ascii_lowercase());
            assert!(!a.name.contains('/'));
            assert!(crate::hub::RepoId::parse(a.repo).is_ok(), "{}", a.repo);
            assert!(
                ALIASES[..i]
                    .iter()
                    .all(|b| b.name != a.name && b.repo != a.repo)
            );
        }
        assert_eq!(
            find("WAN2.1-T2V-1.3B").unwrap().repo,
            "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
        );
    }
}
