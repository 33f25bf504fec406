"""Face models: dlib's recognition ResNet read from its own file format, in PyTorch and ONNX."""
