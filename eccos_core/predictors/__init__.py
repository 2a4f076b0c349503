"""Predictors of per-(query, model) success probability and output length."""

from eccos_core.predictors.base import PREDICTORS, Prediction, Predictor, load_predictor, register

__all__ = ["PREDICTORS", "Prediction", "Predictor", "load_predictor", "register"]
