//! The bundled starter model: a real check of the trained weights.

use aivideo::pipeline::{Control, DeviceChoice, GenerationParams, ModelSource, load};
use aivideo::synth::analyse::analyse;
use aivideo::synth::vocab::{Background, Colour};

/// For a fixed prompt and seed at few steps, the bundled model draws the right object
/// colour on the right background.
#[test]
fn bundled_model_draws_the_requested_colours() {
    let model = load(&ModelSource::Bundled, DeviceChoice::Cpu).expect("bundled model");
    let cases = [
        (
            "a red ball moving right on a black background",
            Colour::Red,
            Background::Black,
        ),
        (
            "a yellow square bouncing on a navy background",
            Colour::Yellow,
            Background::Navy,
        ),
        (
            "a blue triangle growing on a white background",
            Colour::Blue,
            Background::White,
        ),
    ];
    for (prompt, colour, background) in cases {
        let params = GenerationParams {
            prompt: prompt.into(),
            negative_prompt: None,
            steps: 8,
            guidance: model.limits().guidance.default,
            seed: 1,
            width: 256,
            height: 256,
            frames: 16,
            fps: 8,
        };
        let video = model.generate(&params, &mut |_| Control::Continue).unwrap();
        let a = analyse(&video.frames);
        assert_eq!(a.background, background, "{prompt}: {a:?}");
        assert_eq!(a.colour, Some(colour), "{prompt}: {a:?}");
    }
}
