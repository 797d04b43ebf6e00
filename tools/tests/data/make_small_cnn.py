# Makes small_cnn.onnx (Conv, BatchNorm, HardSwish, depthwise Conv, Relu, Resize, MaxPool ceil_mode, GAP, Gemm, Softmax) for the import fuzz test.
import onnx, numpy as np
from onnx import helper, TensorProto, numpy_helper as nh
rng=np.random.default_rng(0)
W=rng.standard_normal((8,3,3,3)).astype(np.float32); B=rng.standard_normal(8).astype(np.float32)
dw=rng.standard_normal((8,1,3,3)).astype(np.float32)
sc=rng.random(8).astype(np.float32)+0.5; bb=rng.standard_normal(8).astype(np.float32); mu=rng.standard_normal(8).astype(np.float32); var=rng.random(8).astype(np.float32)+0.1
fc=rng.standard_normal((8,5)).astype(np.float32); fcb=rng.standard_normal(5).astype(np.float32)
nodes=[helper.make_node('Conv',['x','W','B'],['c1'],pads=[1,1,1,1],strides=[2,2]),
 helper.make_node('BatchNormalization',['c1','sc','bb','mu','var'],['bn']),
 helper.make_node('HardSwish',['bn'],['hs']),
 helper.make_node('Conv',['hs','dw'],['c2'],pads=[1,1,1,1],group=8),
 helper.make_node('Relu',['c2'],['r2']),
 helper.make_node('Resize',['r2','','sc2'],['up'],mode='nearest'),
 helper.make_node('MaxPool',['up'],['mp'],kernel_shape=[3,3],strides=[2,2],ceil_mode=1),
 helper.make_node('GlobalAveragePool',['mp'],['gap']),
 helper.make_node('Flatten',['gap'],['fl']),
 helper.make_node('Gemm',['fl','fc','fcb'],['logits']),
 helper.make_node('Softmax',['logits'],['y'],axis=1)]
inits=[nh.from_array(W,'W'),nh.from_array(B,'B'),nh.from_array(dw,'dw'),nh.from_array(sc,'sc'),nh.from_array(bb,'bb'),nh.from_array(mu,'mu'),nh.from_array(var,'var'),nh.from_array(fc,'fc'),nh.from_array(fcb,'fcb'),nh.from_array(np.array([1,1,2,2],np.float32),'sc2')]
g=helper.make_graph(nodes,'t',[helper.make_tensor_value_info('x',TensorProto.FLOAT,['N',3,17,19])],[helper.make_tensor_value_info('y',TensorProto.FLOAT,['N',5])],inits)
m=helper.make_model(g,opset_imports=[helper.make_opsetid('',14)]); m.ir_version=8; onnx.checker.check_model(m); onnx.save(m,'small_cnn.onnx')



