//! What the conv-like operators (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, and their
//! hybrid and 16x8 variants) share while they are built: the bias operand, the constant
//! weights, and the requantization parameters.

use crate::engine::error::{OpError, OpResult};
use crate::engine::graph::{Activation, Node};
use crate::engine::ops::common::{check_dtype, check_scale, per_tensor_quant, zero_point};
use crate::engine::ops::BuildCtx;
use crate::engine::quant::{
    activation_range_quantized, conv_multiplier_legacy, conv_multiplier_per_channel,
    quantize_multiplier, QType, RequantPerChannel,
};
use crate::engine::tensor::{DType, TensorInfo, TensorRef};
use crate::{op_bail, op_ensure};

/// Optional bias operand (input 2): its dtype and element count are checked.
pub(crate) fn bias_info<'a>(
    ctx: &BuildCtx<'a>,
    node: &Node,
    dtype: DType,
    channels: usize,
) -> OpResult<Option<&'a TensorInfo>> {
    match node.inputs.get(2) {
        Some(Some(t)) => {
            let b = ctx.info(*t)?;
            check_dtype(b, dtype, "bias")?;
            op_ensure!(
                b.num_elements() == channels,
                "bias '{}' has shape {:?}, expected {channels} elements",
                b.name,
                b.shape
            );
            Ok(Some(b))
        }
        _ => Ok(None),
    }
}

/// The constant filter (input 1) and constant bias (input 2, when `has_bias`) of a
/// conv-like node, or `None` when either is computed at run time.
#[allow(clippy::type_complexity)]
pub(crate) fn const_weights<'a, W, B>(
    ctx: &BuildCtx<'a>,
    node: &Node,
    has_bias: bool,
    view: impl Fn(TensorRef<'a>) -> OpResult<&'a [W]>,
    bias_view: impl Fn(TensorRef<'a>) -> OpResult<&'a [B]>,
) -> OpResult<Option<(&'a [W], Option<&'a [B]>)>> {
    let Some(Some(ft)) = node.inputs.get(1) else {
        return Ok(None);
    };
    let Some(f) = ctx.const_data(*ft)? else {
        return Ok(None);
    };
    let w = view(f)?;
    let bias = if has_bias {
        let Some(Some(bt)) = node.inputs.get(2) else {
            return Ok(None);
        };
        let Some(b) = ctx.const_data(*bt)? else {
            return Ok(None);
        };
        Some(bias_view(b)?)
    } else {
        None
    };
    Ok(Some((w, bias)))
}

/// Requantization parameters owned by a kernel.
#[derive(Clone, Debug)]
pub(crate) struct QParams {
    pub input_offset: i32,
    pub filter_offset: i32,
    pub output_offset: i32,
    pub multipliers: Vec<i32>,
    pub shifts: Vec<i32>,
    pub act_min: i32,
    pub act_max: i32,
}

impl QParams {
    pub fn view(&self) -> RequantPerChannel<'_> {
        RequantPerChannel {
            input_offset: self.input_offset,
            filter_offset: self.filter_offset,
            output_offset: self.output_offset,
            multipliers: &self.multipliers,
            shifts: &self.shifts,
            act_min: self.act_min,
            act_max: self.act_max,
        }
    }
}

/// How the effective output multiplier is derived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MultiplierRule {
    /// `PopulateConvolutionQuantizationParams` (int8 conv / depthwise, per-channel FC):
    /// per channel, product in double; the filter zero point must be 0.
    PerChannelDouble,
    /// `GetQuantizedConvolutionMultipler` (uint8, per-tensor int8 FC): one multiplier,
    /// scale product in float; the filter zero point is honoured.
    Legacy,
}

/// Quantization parameters of a quantized conv-like operator whose filter is
/// quantized along `axis` with `channels` output channels.
pub(crate) fn conv_qparams<T: QType>(
    input: &TensorInfo,
    filter: &TensorInfo,
    output: &TensorInfo,
    channels: usize,
    axis: usize,
    act: Activation,
    rule: MultiplierRule,
) -> OpResult<QParams> {
    let iq = per_tensor_quant(input, "input")?;
    let oq = per_tensor_quant(output, "output")?;
    let in_zp = zero_point::<T>(iq, input)?;
    let out_zp = zero_point::<T>(oq, output)?;
    let Some(fq) = filter.quant.as_ref() else {
        op_bail!("filter '{}' has no quantization parameters", filter.name);
    };
    let per_channel = fq.scale.len() > 1;
    if per_channel {
        op_ensure!(
            fq.scale.len() == channels,
            "filter '{}' has {} scales, expected 1 or {channels} (output channels)",
            filter.name,
            fq.scale.len()
        );
        op_ensure!(
            fq.axis == axis,
            "filter '{}' is quantized along axis {}, expected {axis}",
            filter.name,
            fq.axis
        );
    }
    op_ensure!(
        !fq.scale.is_empty(),
        "filter '{}' has no scales",
        filter.name
    );
    for &s in &fq.scale {
        check_scale(s, filter)?;
    }
    let filter_offset = match rule {
        MultiplierRule::PerChannelDouble => {
            op_ensure!(
                fq.zero_point.iter().all(|&z| z == 0),
                "filter '{}' must have zero points 0 (symmetric weights)",
                filter.name
            );
            0
        }
        MultiplierRule::Legacy => {
            op_ensure!(
                !per_channel,
                "filter '{}': per-channel quantization is not supported for {} weights",
                filter.name,
                filter.dtype.name()
            );
            -zero_point::<T>(fq, filter)?
        }
    };
    let (in_s, out_s) = (iq.scale[0], oq.scale[0]);
    let mut multipliers = Vec::with_capacity(channels);
    let mut shifts = Vec::with_capacity(channels);
    for c in 0..channels {
        let fs = if per_channel {
            fq.scale[c]
        } else {
            fq.scale[0]
        };
        let m = match rule {
            MultiplierRule::PerChannelDouble => conv_multiplier_per_channel(in_s, fs, out_s),
            MultiplierRule::Legacy => conv_multiplier_legacy(in_s, fs, out_s),
        };
        let (qm, sh) = quantize_multiplier(m);
        op_ensure!(sh <= 30, "effective output multiplier {m} is too large");
        multipliers.push(qm);
        shifts.push(sh);
    }
    let act = activation_range_quantized(act, out_s, out_zp, T::RANGE).map_err(OpError)?;
    let (act_min, act_max) = (act.min, act.max);
    Ok(QParams {
        input_offset: -in_zp,
        filter_offset,
        output_offset: out_zp,
        multipliers,
        shifts,
        act_min,
        act_max,
    })
}
