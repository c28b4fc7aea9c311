fn main() {
    println!("aivideo");
}
