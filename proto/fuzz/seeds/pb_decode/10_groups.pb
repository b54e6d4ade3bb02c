;<
KL