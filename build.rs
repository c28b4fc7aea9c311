//! Embeds the bundled starter model when its files are present in `assets/starter/`.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(bundled_model)");
    println!("cargo::rerun-if-changed=assets/starter/model.safetensors");
    println!("cargo::rerun-if-changed=assets/starter/config.json");
    let dir = std::path::Path::new("assets/starter");
    if dir.join("model.safetensors").exists() && dir.join("config.json").exists() {
        println!("cargo::rustc-cfg=bundled_model");
    }
}
