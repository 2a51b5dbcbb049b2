"""How small can MNIST be made while LeNet-5 still reaches 95%? See README.md."""
