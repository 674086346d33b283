"""Tiny parallel sentences (English, Portuguese, French) for the language-similarity tests."""

EN = [
    "the cat sits on the mat",
    "the dog runs",
    "a big red house",
    "the small cat",
    "a dog sits on a mat",
    "the red cat runs",
    "a small house",
    "the big dog sits",
    "the cat runs on the mat",
    "a red mat",
    "the small dog runs on the big mat",
    "a cat",
]
PT = [
    "o gato senta no tapete",
    "o cão",
    "casa grande vermelho",
    "o gato pequeno",
    "o cão senta no tapete",
    "o gato vermelho",
    "casa pequeno",
    "o cão grande senta",
    "o gato no tapete",
    "tapete vermelho",
    "o cão pequeno no tapete grande",
    "gato",
]
FR = [
    "le chat est sur le tapis",
    "le chien",
    "maison rouge",
    "le chat",
    "le chien est sur le tapis",
    "chat rouge",
    "maison",
    "le chien est",
    "le chat sur le tapis",
    "tapis rouge",
    "le chien sur le tapis",
    "chat",
]
