//! The optimizers compared in the examples: NovoGrad (ours), and Burn's AdamW and SGD with
//! momentum, behind one type so that the Learner is instantiated once per backend.

use std::fmt;

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdamW, AdamWConfig, GradientsParams, LearningRate, MultiGradientsParams, Optimizer, Sgd,
    SgdConfig,
};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use burn_novograd::{NovoGrad, NovoGradConfig};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// An optimizer to train with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    /// NovoGrad, β = (0.95, 0.98), ε = 1e-8 (the paper's).
    Novograd,
    /// Burn's AdamW, β = (0.9, 0.999), ε = 1e-8.
    Adamw,
    /// Burn's SGD with momentum 0.9 (no dampening, no Nesterov).
    Sgd,
}

impl fmt::Display for OptimizerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.to_possible_value().expect("no skipped variants");
        f.write_str(name.get_name())
    }
}

/// Learning rate and weight decay.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hyper {
    /// Peak learning rate.
    pub lr: f64,
    /// Weight decay (decoupled for AdamW, L2 for SGD, in the moment for NovoGrad).
    pub weight_decay: f32,
}

/// The default [`Hyper`] of each optimizer for one task.
#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    /// NovoGrad's.
    pub novograd: Hyper,
    /// AdamW's.
    pub adamw: Hyper,
    /// SGD's.
    pub sgd: Hyper,
}

/// An optimizer with its hyperparameters: what a run trains with.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerSpec {
    /// Which optimizer.
    pub name: OptimizerName,
    /// Its learning rate and weight decay.
    #[serde(flatten)]
    pub hyper: Hyper,
}

impl OptimizerSpec {
    /// `name` with the task's defaults, overridden by `lr` and `weight_decay` when given.
    pub fn new(
        name: OptimizerName,
        defaults: &Defaults,
        lr: Option<f64>,
        weight_decay: Option<f32>,
    ) -> Self {
        let default = match name {
            OptimizerName::Novograd => defaults.novograd,
            OptimizerName::Adamw => defaults.adamw,
            OptimizerName::Sgd => defaults.sgd,
        };
        Self {
            name,
            hyper: Hyper {
                lr: lr.unwrap_or(default.lr),
                weight_decay: weight_decay.unwrap_or(default.weight_decay),
            },
        }
    }

    /// The optimizer for module `M` on backend `B`.
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(&self) -> AnyOptimizer<M, B> {
        let decay = self.hyper.weight_decay;
        match self.name {
            OptimizerName::Novograd => {
                AnyOptimizer::NovoGrad(NovoGradConfig::new().with_weight_decay(decay).init())
            }
            OptimizerName::Adamw => AnyOptimizer::AdamW(
                AdamWConfig::new()
                    .with_epsilon(1e-8)
                    .with_weight_decay(decay)
                    .init(),
            ),
            OptimizerName::Sgd => AnyOptimizer::Sgd(
                SgdConfig::new()
                    .with_momentum(Some(MomentumConfig::new().with_dampening(0.0)))
                    .with_weight_decay((decay > 0.0).then(|| WeightDecayConfig::new(decay)))
                    .init(),
            ),
        }
    }
}

/// One of the compared optimizers, as one [`Optimizer`] type.
#[derive(Clone)]
pub enum AnyOptimizer<M: AutodiffModule<B>, B: AutodiffBackend> {
    /// NovoGrad.
    NovoGrad(OptimizerAdaptor<NovoGrad, M, B>),
    /// Burn's AdamW.
    AdamW(OptimizerAdaptor<AdamW, M, B>),
    /// Burn's SGD.
    Sgd(OptimizerAdaptor<Sgd<B::InnerBackend>, M, B>),
}

type Records<O, M, B> = <O as Optimizer<M, B>>::Record;

impl<M: AutodiffModule<B>, B: AutodiffBackend> Optimizer<M, B> for AnyOptimizer<M, B> {
    /// The record of whichever optimizer this is; the others are `None`.
    type Record = (
        Option<Records<OptimizerAdaptor<NovoGrad, M, B>, M, B>>,
        Option<Records<OptimizerAdaptor<AdamW, M, B>, M, B>>,
        Option<Records<OptimizerAdaptor<Sgd<B::InnerBackend>, M, B>, M, B>>,
    );

    fn step(&mut self, lr: LearningRate, module: M, grads: GradientsParams) -> M {
        match self {
            Self::NovoGrad(optimizer) => optimizer.step(lr, module, grads),
            Self::AdamW(optimizer) => optimizer.step(lr, module, grads),
            Self::Sgd(optimizer) => optimizer.step(lr, module, grads),
        }
    }

    fn step_multi(&mut self, lr: LearningRate, module: M, grads: MultiGradientsParams) -> M {
        match self {
            Self::NovoGrad(optimizer) => optimizer.step_multi(lr, module, grads),
            Self::AdamW(optimizer) => optimizer.step_multi(lr, module, grads),
            Self::Sgd(optimizer) => optimizer.step_multi(lr, module, grads),
        }
    }

    fn to_record(&self) -> Self::Record {
        match self {
            Self::NovoGrad(optimizer) => (Some(optimizer.to_record()), None, None),
            Self::AdamW(optimizer) => (None, Some(optimizer.to_record()), None),
            Self::Sgd(optimizer) => (None, None, Some(optimizer.to_record())),
        }
    }

    fn load_record(self, record: Self::Record) -> Self {
        let mismatch = "the optimizer record belongs to another optimizer";
        match self {
            Self::NovoGrad(optimizer) => {
                Self::NovoGrad(optimizer.load_record(record.0.expect(mismatch)))
            }
            Self::AdamW(optimizer) => Self::AdamW(optimizer.load_record(record.1.expect(mismatch))),
            Self::Sgd(optimizer) => Self::Sgd(optimizer.load_record(record.2.expect(mismatch))),
        }
    }
}

impl<M: AutodiffModule<B>, B: AutodiffBackend> AnyOptimizer<M, B> {
    /// Bytes of the optimizer state as Burn's full-precision recorder writes it.
    pub fn state_bytes(&self) -> usize {
        BinBytesRecorder::<FullPrecisionSettings>::default()
            .record(self.to_record(), ())
            .expect("optimizer records serialize")
            .len()
    }
}
