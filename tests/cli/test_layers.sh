#!/usr/bin/env bash
# test_layers.sh - the four floors: includes run core <- models <- app <- programs.
exec tools/check-layers.sh
