//! The fused operations as a burn backend extension: implemented for flex, with their own
//! backward for flex under autodiff. Other backends never reach these (see [`super::on_flex`]).

use super::attention::{self, AttnParams};
use super::{gemm, rms_norm, rope, vmath};
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension};
use burn::tensor::{DType, TensorData};
use std::sync::Arc;

/// Operations slmc computes with its own kernels on flex.
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// `a · b` for rank-2 f32 `a: [m, k]`, `b: [k, n]`.
    fn fused_matmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `silu(gate) · up`, elementwise, f32, equal shapes.
    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `x − logsumexp(x)` over the last dimension, f32.
    fn fused_log_softmax(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// RMSNorm of `x` over its last dimension with weight `w` (`[h]`): `x · r · (w + offset)`.
    fn fused_rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f32, offset: f32)
    -> FloatTensor<Self>;
    /// Rotary embedding of `x: [b, h, s, d]` with tables `cos`, `sin: [s, rot]` (constants).
    fn fused_rope(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Causal attention of `q: [b, nh, s, d]` over `k`, `v: [b, nkv, offset + s, d]`, output
    /// `[b, s, nh, d]` (see [`mod@attention`] for the masking rules; `softcap` 0 and `window` 0 mean
    /// none).
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
        softcap: f32,
        window: usize,
        offset: usize,
    ) -> FloatTensor<Self>;
}

/// The values of `t` in row-major order (borrowed when its layout already is, else copied).
fn dense(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(values) => std::borrow::Cow::Borrowed(values),
        None => std::borrow::Cow::Owned(t.to_contiguous().as_slice::<f32>().expect("contiguous").to_vec()),
    }
}

fn swiglu_forward(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
    assert_eq!(gate.layout().shape(), up.layout().shape(), "fused_swiglu: shapes differ");
    assert!(gate.dtype() == DType::F32 && up.dtype() == DType::F32, "fused_swiglu takes f32");
    let mut out = FlexTensor::empty(gate.layout().shape().clone(), DType::F32);
    vmath::swiglu(&dense(&gate), &dense(&up), out.storage_mut());
    out
}

fn log_softmax_forward(x: &FlexTensor) -> FlexTensor {
    assert_eq!(x.dtype(), DType::F32, "fused_log_softmax takes f32");
    let shape = x.layout().shape().clone();
    let width = shape[shape.num_dims() - 1];
    let mut out = FlexTensor::empty(shape, DType::F32);
    vmath::log_softmax(&dense(x), width, out.storage_mut());
    out
}

fn swiglu_backward(gate: FlexTensor, up: FlexTensor, dy: FlexTensor) -> (FlexTensor, FlexTensor) {
    let shape = gate.layout().shape().clone();
    let mut dg = FlexTensor::empty(shape.clone(), DType::F32);
    let mut du = FlexTensor::empty(shape, DType::F32);
    vmath::swiglu_grad(&dense(&gate), &dense(&up), &dense(&dy), dg.storage_mut(), du.storage_mut());
    (dg, du)
}

impl FusedOps for Flex {
    fn fused_matmul(a: FlexTensor, b: FlexTensor) -> FlexTensor {
        gemm::matmul(&a, false, &b, false)
    }

    fn fused_swiglu(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        swiglu_forward(gate, up)
    }

    fn fused_log_softmax(x: FlexTensor) -> FlexTensor {
        log_softmax_forward(&x)
    }

    fn fused_rms_norm(x: FlexTensor, w: FlexTensor, eps: f32, offset: f32) -> FlexTensor {
        let shape = x.layout().shape().clone();
        let (y, _) = rms_norm::forward(&dense(&x), &dense(&w), eps, offset);
        FlexTensor::from_data(TensorData::new(y, shape))
    }

    fn fused_rope(x: FlexTensor, cos: FlexTensor, sin: FlexTensor) -> FlexTensor {
        let rot = cos.layout().shape()[1];
        rope::rotate(&x, &rope::table(&cos), &rope::table(&sin), rot, false)
    }

    fn fused_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        scale: f32,
        softcap: f32,
        window: usize,
        offset: usize,
    ) -> FlexTensor {
        attention::forward(&q, &k, &v, AttnParams { scale, softcap, window, offset }).0
    }
}

#[derive(Debug)]
struct LogSoftmaxBackward;

impl Backward<Flex, 1> for LogSoftmaxBackward {
    /// The output (its exponent is the softmax the gradient needs).
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let out = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |dy| {
            let shape = out.layout().shape().clone();
            let width = shape[shape.num_dims() - 1];
            let mut dx = FlexTensor::empty(shape, DType::F32);
            vmath::log_softmax_grad(&dense(&out), &dense(&dy), width, dx.storage_mut());
            dx
        });
    }
}

#[derive(Debug)]
struct RmsNormBackward;

impl Backward<Flex, 2> for RmsNormBackward {
    /// The input and the weight, each row's `1 / rms` and the offset.
    type State = (FlexTensor, FlexTensor, Arc<Vec<f32>>, f32);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w, inv, offset) = ops.state;
        let shape = x.layout().shape().clone();
        let dy = grads.consume::<Flex>(&ops.node);
        let (dx, dw) = rms_norm::backward(&dense(&x), &dense(&w), offset, &inv, &dense(&dy));
        let [px, pw] = ops.parents;
        if let Some(node) = px {
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(dx, shape)));
        }
        if let Some(node) = pw {
            let h = dw.len();
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(dw, [h])));
        }
    }
}

#[derive(Debug)]
struct RopeBackward;

impl Backward<Flex, 1> for RopeBackward {
    /// The tables (`cos`, `sin`, row-major) and the rotary width.
    type State = (Arc<Vec<f32>>, Arc<Vec<f32>>, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (cos, sin, rot) = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |dy| rope::rotate(&dy, &cos, &sin, rot, true));
    }
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    /// The checkpointed q, k, v, each row's log-sum-exp and the settings.
    type State = (NodeId, NodeId, NodeId, Arc<Vec<f32>>, AttnParams);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let (q, k, v, lse, params) = ops.state;
        let q: FlexTensor = checkpointer.retrieve_node_output(q);
        let k: FlexTensor = checkpointer.retrieve_node_output(k);
        let v: FlexTensor = checkpointer.retrieve_node_output(v);
        let dout = grads.consume::<Flex>(&ops.node);
        let (dq, dk, dv) = attention::backward(&q, &k, &v, &lse, &dout, params);
        for (parent, grad) in ops.parents.into_iter().zip([dq, dk, dv]) {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

#[derive(Debug)]
struct MatmulBackward;

impl Backward<Flex, 2> for MatmulBackward {
    /// The checkpointed inputs (`a` is needed for `b`'s gradient and the reverse).
    type State = (Option<NodeId>, Option<NodeId>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let (a, b) = ops.state;
        let a: Option<FlexTensor> = a.map(|id| checkpointer.retrieve_node_output(id));
        let b: Option<FlexTensor> = b.map(|id| checkpointer.retrieve_node_output(id));
        binary::<Flex, _, _>(
            ops.parents,
            ops.node,
            grads,
            |dy| gemm::matmul(&dy, false, &b.expect("b kept for a's gradient"), true),
            |dy| gemm::matmul(&a.expect("a kept for b's gradient"), true, &dy, false),
        );
    }
}

#[derive(Debug)]
struct SwigluBackward;

impl Backward<Flex, 2> for SwigluBackward {
    type State = (NodeId, NodeId);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let gate: FlexTensor = checkpointer.retrieve_node_output(ops.state.0);
        let up: FlexTensor = checkpointer.retrieve_node_output(ops.state.1);
        let dy = grads.consume::<Flex>(&ops.node);
        let (dg, du) = swiglu_backward(gate, up, dy);
        let [pg, pu] = ops.parents;
        if let Some(node) = pg {
            grads.register::<Flex>(node.id, dg);
        }
        if let Some(node) = pu {
            grads.register::<Flex>(node.id, du);
        }
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn fused_matmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        let (a_tracked, b_tracked) = (a.is_tracked(), b.is_tracked());
        match MatmulBackward.prepare::<C>([a.node(), b.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let a_state = b_tracked.then(|| prep.checkpoint(&a));
                let b_state = a_tracked.then(|| prep.checkpoint(&b));
                let out = Flex::fused_matmul(a.into_primitive(), b.into_primitive());
                prep.finish((a_state, b_state), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Flex::fused_matmul(a.into_primitive(), b.into_primitive()))
            }
        }
    }

    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        match SwigluBackward.prepare::<C>([gate.node(), up.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&gate), prep.checkpoint(&up));
                let out = Flex::fused_swiglu(gate.into_primitive(), up.into_primitive());
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Flex::fused_swiglu(gate.into_primitive(), up.into_primitive()))
            }
        }
    }

    fn fused_log_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match LogSoftmaxBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = log_softmax_forward(x.primitive());
                prep.finish(out.clone(), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(log_softmax_forward(x.primitive())),
        }
    }

    fn fused_rms_norm(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        eps: f32,
        offset: f32,
    ) -> FloatTensor<Self> {
        let (xp, wp) = (x.primitive().clone(), w.primitive().clone());
        let (y, inv) = rms_norm::forward(&dense(&xp), &dense(&wp), eps, offset);
        let out = FlexTensor::from_data(TensorData::new(y, xp.layout().shape().clone()));
        match RmsNormBackward.prepare::<C>([x.node(), w.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((xp, wp, Arc::new(inv), offset), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_rope(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> FloatTensor<Self> {
        let rot = cos.primitive().layout().shape()[1];
        let (cos, sin) = (rope::table(cos.primitive()), rope::table(sin.primitive()));
        let out = rope::rotate(x.primitive(), &cos, &sin, rot, false);
        match RopeBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((Arc::new(cos), Arc::new(sin), rot), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
        softcap: f32,
        window: usize,
        offset: usize,
    ) -> FloatTensor<Self> {
        let params = AttnParams { scale, softcap, window, offset };
        match AttentionBackward.prepare::<C>([q.node(), k.node(), v.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let ids = (prep.checkpoint(&q), prep.checkpoint(&k), prep.checkpoint(&v));
                let (out, lse) = attention::forward(q.primitive(), k.primitive(), v.primitive(), params);
                prep.finish((ids.0, ids.1, ids.2, Arc::new(lse), params), out)
            }
            OpsKind::UnTracked(prep) => {
                let out = attention::forward(q.primitive(), k.primitive(), v.primitive(), params).0;
                prep.finish(out)
            }
        }
    }
}
