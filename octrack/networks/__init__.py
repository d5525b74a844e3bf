"""The three networks. Each module says only what is special about its network: how a training sample is
cut from a Dataset, how its model is built, its target and loss, and how its output becomes predictions."""
