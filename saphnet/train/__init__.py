"""Training and evaluation of SAPHNet."""
