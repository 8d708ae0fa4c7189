def build() -> str:
    return "tiny model"
