//! Adam (Kingma and Ba, 2015) over a flat vector of pixels, shared by the examples that descend
//! noisy E-LPIPS gradients (`attack`, `interpolate`): per-pixel normalised steps that the noise of
//! a few-sample gradient does not throw around.

pub struct Adam {
    m1: Vec<f32>,
    m2: Vec<f32>,
    t: i32,
    eps: f32,
}

impl Adam {
    const B1: f32 = 0.9;
    const B2: f32 = 0.999;

    /// Moments for `n` parameters; `eps` guards the division by the second moment's root.
    pub fn new(n: usize, eps: f32) -> Self {
        Adam { m1: vec![0.0; n], m2: vec![0.0; n], t: 0, eps }
    }

    /// Takes gradient `g` into the moments and returns each parameter's step (to subtract):
    /// `lr * m_hat / (sqrt(v_hat) + eps)` with the bias-corrected moments.
    pub fn step(&mut self, g: &[f32], lr: f32) -> Vec<f32> {
        self.t += 1;
        let (c1, c2) = (1.0 - Self::B1.powi(self.t), 1.0 - Self::B2.powi(self.t));
        let mut out = vec![0.0f32; g.len()];
        for i in 0..g.len() {
            self.m1[i] = Self::B1 * self.m1[i] + (1.0 - Self::B1) * g[i];
            self.m2[i] = Self::B2 * self.m2[i] + (1.0 - Self::B2) * g[i] * g[i];
            let (mh, vh) = (self.m1[i] / c1, self.m2[i] / c2);
            out[i] = lr * mh / (vh.sqrt() + self.eps);
        }
        out
    }
}
