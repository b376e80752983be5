"""What crosses a wire, in numpy only: OIP bodies, tensor packing, signature checks, datatypes,
warmup samples, and the typed job and reply messages."""
