"""Digits with a small MLP, tuned through NNI annotations: NNI's mnist-annotation example on scikit-learn's digits.

The annotations are plain string statements, so this file runs as it is, without nni-pl, on the values it
assigns (``python train.py``). ``nni-pl launch config.yml`` (``useAnnotation: true``) generates the search space
from them and runs each trial in a rewritten copy of this folder, where each annotated value is the tuner's.
"""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import MinMaxScaler, StandardScaler


def standard_scale(x_train, x_test):
    scaler = StandardScaler().fit(x_train)
    return scaler.transform(x_train), scaler.transform(x_test)


def minmax_scale(x_train, x_test):
    scaler = MinMaxScaler().fit(x_train)
    return scaler.transform(x_train), scaler.transform(x_test)


def main():
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)

    """@nni.function_choice(standard_scale(x_train, x_test), minmax_scale(x_train, x_test), name=scale)"""
    x_train, x_test = standard_scale(x_train, x_test)

    """@nni.variable(nni.choice(16, 32, 64, 128), name=hidden_size)"""
    hidden_size = 32
    """@nni.variable(nni.loguniform(0.0001, 0.1), name=learning_rate)"""
    learning_rate = 0.01
    """@nni.variable(nni.choice('relu', 'tanh'), name=activation)"""
    activation = "relu"
    """@nni.variable(nni.quniform(4, 12, 4), name=epochs)"""
    epochs = 8

    print(f"hidden_size={hidden_size} learning_rate={learning_rate} activation={activation} epochs={epochs}")
    model = MLPClassifier(
        hidden_layer_sizes=(hidden_size,),
        activation=activation,
        learning_rate_init=learning_rate,
        random_state=0,
    )
    classes = np.unique(y)
    accuracy = 0.0
    for epoch in range(int(epochs)):
        model.partial_fit(x_train, y_train, classes=classes)
        accuracy = model.score(x_test, y_test)
        print(f"epoch {epoch}: test accuracy {accuracy:.4f}")
        """@nni.report_intermediate_result(accuracy)"""

    """@nni.report_final_result(accuracy)"""


if __name__ == "__main__":
    main()
