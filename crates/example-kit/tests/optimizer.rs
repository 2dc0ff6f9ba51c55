//! The optimizer options of the command line: `--no-decay-bias-norm` takes biases and
//! normalisation parameters out of weight decay, `--grad-clip-norm` reaches every optimizer.

use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use clap::ValueEnum;
use example_kit::{Defaults, Hyper, OptimizerName, OptimizerSpec};

const DEFAULTS: Defaults = Defaults {
    novograd: Hyper {
        lr: 0.1,
        weight_decay: 0.1,
    },
    adamw: Hyper {
        lr: 0.1,
        weight_decay: 0.1,
    },
    sgd: Hyper {
        lr: 0.1,
        weight_decay: 0.1,
    },
    lamb: Hyper {
        lr: 0.1,
        weight_decay: 0.1,
    },
    lion: Hyper {
        lr: 0.1,
        weight_decay: 0.1,
    },
};

#[derive(Module, Debug)]
struct Net {
    linear: Linear,
    norm: LayerNorm,
}

fn values(tensor: Tensor<1>) -> Vec<f32> {
    tensor.into_data().iter::<f32>().collect()
}

/// The linear weight, linear bias and norm scale (`gamma`) of `net`.
fn parameters(net: &Net) -> [Vec<f32>; 3] {
    [
        values(net.linear.weight.val().flatten(0, 1)),
        values(net.linear.bias.as_ref().unwrap().val()),
        values(net.norm.gamma.val()),
    ]
}

/// One step of `spec` on `net` with zero gradients: only weight decay moves a parameter.
fn step_without_gradient(spec: OptimizerSpec, net: &Net, device: &Device) -> Net {
    let input = Tensor::<2>::ones([2, 4], device);
    let loss = net
        .norm
        .forward(net.linear.forward(input))
        .sum()
        .mul_scalar(0.0);
    let grads = GradientsParams::from_grads(loss.backward(), net);
    spec.init().step(spec.hyper.lr, net.clone(), grads)
}

#[test]
fn no_decay_bias_norm_leaves_biases_and_norms_undecayed() {
    let device = Device::flex().autodiff();
    let net = Net {
        linear: LinearConfig::new(4, 3).init(&device),
        norm: LayerNormConfig::new(3).init(&device),
    };
    let [weight, bias, gamma] = parameters(&net);
    for &name in OptimizerName::value_variants() {
        let mut spec = OptimizerSpec::new(name, &DEFAULTS, None, None);
        let [decayed_weight, decayed_bias, decayed_gamma] =
            parameters(&step_without_gradient(spec, &net, &device));
        assert_ne!(decayed_weight, weight, "{name}: decay on weights");
        assert_ne!(
            decayed_bias, bias,
            "{name}: decay on biases without the flag"
        );
        assert_ne!(
            decayed_gamma, gamma,
            "{name}: decay on norms without the flag"
        );
        // The decay term alone: each weight shrinks towards zero.
        for (after, before) in decayed_weight.iter().zip(&weight) {
            assert!(after.abs() < before.abs(), "{name}: {before} -> {after}");
        }

        spec.no_decay_bias_norm = true;
        let [kept_weight, kept_bias, kept_gamma] =
            parameters(&step_without_gradient(spec, &net, &device));
        assert_eq!(kept_weight, decayed_weight, "{name}: weights still decay");
        assert_eq!(kept_bias, bias, "{name}: a bias decayed");
        assert_eq!(kept_gamma, gamma, "{name}: a norm scale decayed");
    }
}

#[test]
fn grad_clip_norm_reaches_every_optimizer_and_its_groups() {
    for &name in OptimizerName::value_variants() {
        let mut spec = OptimizerSpec::new(name, &DEFAULTS, None, None);
        assert!(!spec.init().has_gradient_clipping(), "{name}");
        spec.grad_clip_norm = Some(1.5);
        spec.no_decay_bias_norm = true;
        assert!(spec.init().has_gradient_clipping(), "{name}");
        let config = spec.burn_config();
        let clipping = config
            .get("grad_clipping")
            .or_else(|| config.get("gradient_clipping"));
        assert_eq!(
            clipping,
            Some(&serde_json::to_value(GradientClippingConfig::Norm(1.5)).unwrap()),
            "{name}: {config}"
        );
    }
    let novograd = OptimizerSpec::new(OptimizerName::Novograd, &DEFAULTS, None, None);
    assert!(novograd.novograd_config().unwrap().grad_clipping.is_none());
}
