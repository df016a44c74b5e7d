"""``#Tag#`` tokens: found in text, deterministic vocabulary, atomic in the tokenizer, kept on decode, and
the same tags for the vocabulary, ROUGE's tokenizers and TTA's structure check."""

from __future__ import annotations

import pytest

from lightning_summ.data.tokenizer_training import train_bpe_tokenizer
from lightning_summ.metrics.rouge import tokenize
from lightning_summ.tags import KNOWN_TAGS, TAG_PATTERN, add_tags_to_tokenizer, find_tags, tag_vocabulary
from lightning_summ.augmenters import _structure

# Written for these tests.
SENTENCES = [
    "안녕하세요, 오늘 날씨가 정말 좋네요.",
    "네, 저는 내일 아침에 학교에 갑니다.",
    "전화번호를 알려 주시겠어요?",
    "주소는 서울시 중구입니다.",
    "회의는 오후 세 시에 시작해요.",
    "점심으로 비빔밥을 먹을까요, 아니면 김밥을 먹을까요?",
    "이메일로 자료를 보내 드릴게요.",
    "생년월일을 확인해 주세요.",
    "카드 번호는 나중에 알려 드릴게요.",
    "택시를 타고 공항으로 가야 해요.",
    "주말에 가족과 함께 영화를 봤어요.",
    "새로운 프로젝트 일정이 너무 빡빡해요.",
]


@pytest.fixture
def tokenizer(tmp_path_factory):
    out = tmp_path_factory.mktemp("bpe")
    tok = train_bpe_tokenizer(SENTENCES * 3, out, vocab_size=300)
    assert (out / "tokenizer.json").is_file()
    return tok


# -- find_tags ------------------------------------------------------------------------------------

def test_find_tags_finds_speaker_and_mask_tags():
    texts = [
        "#Person1#: 제 번호는 #PhoneNumber#이고, 주소는 #Address#예요.",
        "#Person2#:네,#Email#로 보낼게요.#Person1#와#Person2#",
        "차량 번호 #CarNumber#. 사용자 정의 #Custom_Tag2#",
        "#사람#은 #화자_2#에게 말했다",  # letters of any script: Korean tags are tags too
    ]
    assert find_tags(texts) == {"#Person1#", "#Person2#", "#PhoneNumber#", "#Address#", "#Email#",
                                "#CarNumber#", "#Custom_Tag2#", "#사람#", "#화자_2#"}


@pytest.mark.parametrize("text", ["#", "##", "# #", "# 1 #", "#1#", "# Person1 #", "#Person 1#", "#_x#", "번호 #123#",
                                  "#1사람#", "#Person1", "Person1#", ""])
def test_find_tags_ignores_non_tags(text):
    assert find_tags([text]) == set()


def test_find_tags_accepts_any_iterable():
    assert find_tags(t for t in ["#Foo#", "x #Bar# y"]) == {"#Foo#", "#Bar#"}
    assert find_tags([]) == set()


# -- tag_vocabulary -------------------------------------------------------------------------------

def test_tag_vocabulary_lists_known_tags_first_without_duplicates():
    found = {"#Zeta#", "#Person1#", "#Alpha#", "#Email#"}
    vocab = tag_vocabulary(found, extra=["#Beta#", "#Alpha#", "#SSN#"])
    assert vocab[: len(KNOWN_TAGS)] == list(KNOWN_TAGS)
    assert vocab[len(KNOWN_TAGS):] == ["#Alpha#", "#Beta#", "#Zeta#"]
    assert len(vocab) == len(set(vocab))


def test_tag_vocabulary_is_deterministic():
    found = ["#Zeta#", "#Alpha#", "#Mid#", "#Person3#"]
    first = tag_vocabulary(found)
    assert tag_vocabulary(list(reversed(found))) == first
    assert tag_vocabulary(set(found)) == first
    assert tag_vocabulary() == list(KNOWN_TAGS)


def test_known_tags_cover_the_competition_masks():
    for tag in ["#Person1#", "#Person2#", "#Person7#", "#PhoneNumber#", "#Address#", "#DateOfBirth#",
                "#PassportNumber#", "#SSN#", "#CardNumber#", "#CarNumber#", "#Email#"]:
        assert tag in KNOWN_TAGS
    assert len(set(KNOWN_TAGS)) == len(KNOWN_TAGS)
    assert find_tags(KNOWN_TAGS) == set(KNOWN_TAGS)


# -- add_tags_to_tokenizer -----------------------------------------------------------------------

def test_tags_are_split_before_they_are_added(tmp_path):
    tok = train_bpe_tokenizer(SENTENCES * 3, tmp_path, vocab_size=300)
    assert len(tok.tokenize("#PhoneNumber#")) > 1


def test_added_tags_are_single_tokens(tokenizer):
    tags = tag_vocabulary(["#Foo#"])
    size = len(tokenizer)
    assert add_tags_to_tokenizer(tokenizer, tags) == len(tags)
    assert len(tokenizer) == size + len(tags)
    assert add_tags_to_tokenizer(tokenizer, tags) == 0  # idempotent
    assert len(tokenizer) == size + len(tags)
    for tag in tags:
        assert tokenizer.tokenize(tag) == [tag]
        ids = tokenizer(f"앞 {tag}뒤", add_special_tokens=False)["input_ids"]
        assert tokenizer.convert_tokens_to_ids(tag) in ids
    # Regular added tokens, not "special" ones (skip_special_tokens would delete them).
    assert not set(tags) & set(tokenizer.all_special_tokens)


def test_decode_keeps_tags_and_exact_text(tokenizer):
    add_tags_to_tokenizer(tokenizer, tag_vocabulary(["#Foo#"]))
    text = ("#Person1#: 안녕하세요 , 제 번호는 #PhoneNumber# 입니다 .\n"
            "#Person2#:네!  #Email#로   보낼게요 .\t끝#Foo#\n#Person1#와#Person2#")
    encoded = tokenizer(text)["input_ids"]
    assert encoded[0] == tokenizer.bos_token_id and encoded[-1] == tokenizer.eos_token_id
    for tag in ("#Person1#", "#Person2#", "#PhoneNumber#", "#Email#", "#Foo#"):
        assert tokenizer.convert_tokens_to_ids(tag) in encoded
    assert tokenizer.decode(encoded, skip_special_tokens=True) == text
    with_specials = tokenizer.decode(encoded, skip_special_tokens=False)
    assert with_specials.startswith("<s>") and with_specials.endswith("</s>")
    assert with_specials[len("<s>"):-len("</s>")] == text


def test_byte_level_round_trip_without_tags(tokenizer):
    # Characters never seen in training fall back to bytes: no <unk>, exact text back.
    text = "처음 보는 글자: 뷁 쀍 😀 — café"
    encoded = tokenizer(text)["input_ids"]
    assert tokenizer.unk_token_id not in encoded
    assert tokenizer.decode(encoded, skip_special_tokens=True) == text


def test_saved_tokenizer_keeps_added_tags(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    add_tags_to_tokenizer(tokenizer, tag_vocabulary())
    tokenizer.save_pretrained(str(tmp_path))
    reloaded = AutoTokenizer.from_pretrained(str(tmp_path))
    text = "#Person1#: #Address#로 와 주세요."
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert reloaded.tokenize("#Address#") == ["#Address#"]
    assert reloaded.decode(reloaded(text)["input_ids"], skip_special_tokens=True) == text


# -- one rule for every consumer ------------------------------------------------------------------

# Each text with the tags in it, in order: what the vocabulary, ROUGE and TTA must all see.
TAGGED = {
    "#사람#은 #Person1#는 왔다": ["#사람#", "#Person1#"],
    "#Person1#는 #PhoneNumber#로 전화했다.#Address#": ["#Person1#", "#PhoneNumber#", "#Address#"],
    "## #1# # # #_x# #Person 1# 번호 #123#": [],
    "#Person1##Person2#와 #Custom_Tag2#": ["#Person1#", "#Person2#", "#Custom_Tag2#"],
}


@pytest.mark.parametrize("text", TAGGED)
def test_vocabulary_rouge_and_tta_see_the_same_tags(text):
    expected = TAGGED[text]
    assert TAG_PATTERN.findall(text) == expected and find_tags([text]) == set(expected)
    for name in ("morpheme", "char"):  # a tag is one token, and nothing else is a tag
        assert [t for t in tokenize(text, name) if TAG_PATTERN.fullmatch(t)] == expected, name
    # whitespace: str.split() never breaks a tag (a tag has no whitespace); a glued particle stays attached.
    assert [tag for token in tokenize(text, "whitespace") for tag in TAG_PATTERN.findall(token)] == expected
    # TTA's paraphrase check compares the masks (every tag but the speakers #PersonN#), sorted.
    assert _structure(text)[1] == sorted(t for t in expected if not t.startswith("#Person"))


def test_tta_structure_sees_the_vocabulary_tags():
    dialogue = "#사람#: 안녕하세요. #Address#로 가요.\n#Person2#: 네, #PhoneNumber#로 #1# 전화할게요.\n## 메모"
    speakers, masks = _structure(dialogue)
    assert speakers == ["#사람#", "#Person2#"]
    assert masks == ["#Address#", "#PhoneNumber#", "#사람#"]  # every tag but #PersonN#, sorted; not "#1#"
    assert set(speakers) | set(masks) == find_tags([dialogue])


def test_every_tag_rouge_counts_is_one_vocabulary_token(tokenizer):
    texts = list(TAGGED)
    add_tags_to_tokenizer(tokenizer, tag_vocabulary(find_tags(texts)))
    counted = {t for text in texts for name in ("morpheme", "char") for t in tokenize(text, name)
               if TAG_PATTERN.fullmatch(t)}
    assert counted == {"#사람#", "#Person1#", "#Person2#", "#PhoneNumber#", "#Address#", "#Custom_Tag2#"}
    for tag in counted:
        assert tokenizer.tokenize(tag) == [tag]
