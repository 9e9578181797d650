"""The reader on documents nobody tuned it for: short texts of other domains, written for this test, read by the real
bundled models with the shipped calibration. It must answer what the texts say (amounts in USD, EUR, GBP, JPY and
INR, two-word names, organisations, dates written several ways) and abstain on near misses."""

import pytest

DOCUMENTS = {
    "travel/night-trains.md": (
        "# Night trains\n\nA couchette on the night train from Vienna to Rome costs EUR 89. "
        "The sleeper from Chicago to Denver is priced at USD 240 per cabin."
    ),
    "shop/rare-books.md": "# Rare books\n\nA signed first edition of The Glass Orchard sells for GBP 1,150.",
    "tea/imports.md": "# Tea imports\n\nCeremonial matcha from Uji is priced at JPY 3,200 per 100 grams.",
    "clinic/fees.md": "# Fees\n\nA first consultation at the Pune eye clinic costs INR 800.",
    "observatory/staff.md": (
        "# Staff\n\nThe Kelso Observatory is directed by Amara Okafor, who joined it in March 2015. "
        "Its night assistant is Tomas Rivera."
    ),
    "coop/history.md": (
        "# History\n\nThe Riverside Food Cooperative was founded on 4 July 1987 by twelve farmers. "
        "Its new warehouse opened on 2019-06-14."
    ),
}

ANSWERED = [
    ("How much does a couchette from Vienna to Rome cost?", "89"),
    ("What is the price of a signed first edition of The Glass Orchard?", "1,150"),
    ("What does a first consultation at the Pune eye clinic cost?", "800"),
    ("Who directs the Kelso Observatory?", "Amara Okafor"),
    ("When was the Riverside Food Cooperative founded?", "1987"),
]
NEAR_MISSES = [
    "How much does a couchette from Vienna to Paris cost?",  # Paris is in no document
    "Who directs the Kelso Aquarium?",  # an aquarium is not the observatory
    "When was the Hillside Food Cooperative founded?",  # another cooperative
]


@pytest.fixture(scope="module")
def asker(tmp_path_factory):
    from ingest.embedding import load_embedder
    from ingest.sync import index_folder
    from rag.answer import answer_question
    from rag.generation import load_generator
    from rag.retrieval import Retriever

    root = tmp_path_factory.mktemp("elsewhere")
    for name, text in DOCUMENTS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n", encoding="utf-8")
    embedder = load_embedder(progress=False)
    index_folder(root, root.parent / "elsewhere-index", embedder)
    retriever = Retriever(root.parent / "elsewhere-index", embedder=embedder)
    generator = load_generator()
    return lambda question: answer_question(retriever, generator, question)


@pytest.mark.slow
@pytest.mark.parametrize("question,expected", ANSWERED)
def test_answers_what_the_documents_say(asker, question, expected):
    answer = asker(question)
    assert not answer.abstained and expected in answer.answer, (answer.answer, answer.reason)


@pytest.mark.slow
@pytest.mark.parametrize("question", NEAR_MISSES)
def test_abstains_on_near_misses(asker, question):
    answer = asker(question)
    assert answer.abstained, answer.answer
