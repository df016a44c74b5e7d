"""Generate the SYNTHETIC Korean dialogue-summarization set the quickstart trains on.

    python lightning_summ/sample_data/make_synthetic.py            # rewrites synthetic_{train,dev,test}.csv
    python lightning_summ/sample_data/make_synthetic.py --check    # exit 1 if the committed files differ

Why: a 1M-parameter BART trained from scratch cannot learn Korean from the 150 hand-written
dialogues in a few CPU minutes (it writes one summary for every input). These dialogues are built
from templates (situations x phrasings) filled with random names, times, places, items and masked
tags, and every summary restates the specific slots of its own dialogue. A small model learns to copy
them within minutes, so the quickstart shows a model that reads its input. It is not natural
language data and not a benchmark. Deterministic: the same seed writes the same bytes.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPLITS = {"train": 2400, "dev": 40, "test": 40}
SEED = 20261201

SURNAMES = "김 이 박 최 정 강 조 윤 장 임 한 오 서 신 권 황 안 송 류 홍".split()
GIVEN = ("민준 서연 도윤 지우 하준 서윤 시우 지민 주원 하은 예준 수아 건우 지아 현우 다은 "
         "승민 유진 태희 은서 준호 소영 재훈 미나 성진 혜원 동현 수빈 영호 가은").split()
ITEMS = ("노트북 우산 여권 충전기 보고서 계약서 케이크 자전거 카메라 이어폰 지갑 열쇠 텀블러 교과서 "
         "운동화 태블릿 꽃다발 모니터 선글라스 손목시계 배낭 가습기 전자레인지 청소기 프린터 "
         "키보드 마우스 책상 의자 담요 사진첩 화분 와인 향수 목도리 장갑 머그잔 스피커 헤드폰 필통").split()
PLACES = ["강남역", "시청역", "서울역", "도서관 정문", "회사 로비", "학교 운동장", "중앙공원", "박물관", "시민회관",
          "백화점 주차장", "병원 본관", "우체국", "체육관", "카페 거리", "기차역 대합실", "광장", "터미널",
          "한강공원", "시장 입구", "영화관 매표소", "구청 민원실", "호텔 라운지", "공항 출국장", "미술관"]
DAYS = ["오늘", "내일", "모레", "이번 주 금요일", "다음 주 월요일", "다음 주 수요일", "이번 토요일", "이번 일요일"]
HOURS = ["오전 9시", "오전 10시", "오전 11시", "낮 12시", "오후 1시", "오후 2시", "오후 3시", "오후 4시",
         "오후 5시", "오후 6시", "저녁 7시", "저녁 8시"]
FILLERS = [("안녕하세요, 잘 지냈어요?", "네, 덕분에요."), ("지금 잠깐 통화 괜찮아요?", "네, 말씀하세요."),
           ("날씨가 많이 추워졌네요.", "그러게요, 따뜻하게 입으세요."), ("요즘 일은 괜찮아요?", "네, 그럭저럭 지내요.")]


def batchim(word: str) -> bool:
    """Whether the word ends in a final consonant (decides 은/는, 이/가, 을/를, 과/와)."""
    last = word.rstrip("#")[-1]
    if "가" <= last <= "힣":
        return (ord(last) - 0xAC00) % 28 != 0
    return last in "013678"  # 영, 일, 삼, 육, 칠, 팔 end in a consonant


def josa(word: str, pair: str) -> str:
    with_final, without = pair.split("/")
    return word + (with_final if batchim(word) else without)


def time_slot(rng: random.Random) -> str:
    return f"{rng.choice(DAYS)} {rng.choice(HOURS)}"


def name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN)


def meeting(rng, a, b):
    t, p, item = time_slot(rng), rng.choice(PLACES), rng.choice(ITEMS)
    turns = [(a, rng.choice([f"{t}에 {p}에서 만날 수 있어요?", f"우리 {t}에 {p}에서 볼까요?"])),
             (b, "네, 좋아요. 제가 뭘 가져가면 될까요?"), (a, f"{josa(item, '을/를')} 꼭 가져와 주세요."),
             (b, f"알겠어요. {josa(item, '을/를')} 챙겨서 {t}에 갈게요.")]
    summary = f"{josa(a, '과/와')} {josa(b, '은/는')} {t}에 {p}에서 만나기로 하고, {josa(b, '이/가')} {josa(item, '을/를')} 가져가기로 합니다."
    return turns, summary, "약속", [t, p, item]


def hospital(rng, a, b):
    doctor, t = name(rng), time_slot(rng)
    turns = [(a, rng.choice(["진료 예약을 하고 싶은데요.", "병원 예약 좀 하려고 전화했어요."])),
             (b, "어느 선생님께 진료를 받으시겠어요?"), (a, f"{doctor} 선생님이요. {t}에 가능할까요?"),
             (b, f"네, {t}로 예약해 드릴게요. 연락처를 알려 주세요."), (a, "#PhoneNumber#입니다.")]
    summary = f"{josa(a, '은/는')} {doctor} 선생님에게 {t} 진료를 예약하고 연락처 #PhoneNumber#를 남깁니다."
    return turns, summary, "병원 예약", [doctor, t]


def delivery(rng, a, b):
    item, day = rng.choice(ITEMS), rng.choice(DAYS)
    turns = [(a, f"주문한 {josa(item, '이/가')} 아직 안 왔어요."), (b, "주소를 확인해 드릴게요. 어디로 받으시나요?"),
             (a, "#Address#로 받기로 했어요."), (b, f"확인해 보니 {day} 도착할 예정입니다."),
             (a, rng.choice(["알겠습니다. 기다릴게요.", "네, 감사합니다."]))]
    summary = f"{josa(a, '은/는')} 주문한 {josa(item, '이/가')} 오지 않았다고 문의하고, {josa(b, '은/는')} #Address#로 {day} 도착할 예정이라고 알려 줍니다."
    return turns, summary, "배송 문의", [item, day]


def restaurant(rng, a, b):
    place, t, n = rng.choice(PLACES), time_slot(rng), rng.randint(2, 9)
    turns = [(a, f"{place} 근처 식당인데 예약되나요?"), (b, "네, 언제 몇 분이세요?"), (a, f"{t}에 {n}명이요."),
             (b, "예약자 성함과 연락처를 알려 주세요."), (a, "연락처는 #PhoneNumber#예요.")]
    summary = f"{josa(a, '은/는')} {place} 근처 식당에 {t} {n}명 자리를 예약하고 연락처 #PhoneNumber#를 알려 줍니다."
    return turns, summary, "식당 예약", [place, t, f"{n}명"]


def lost_item(rng, a, b):
    item, place = rng.choice(ITEMS), rng.choice(PLACES)
    turns = [(a, f"{place}에서 {josa(item, '을/를')} 잃어버렸어요."), (b, f"어떤 {item}인가요?"),
             (a, rng.choice(["검은색이고 오래된 거예요.", "작고 하얀색이에요."])),
             (b, "찾으면 연락드릴게요. 번호를 알려 주세요."), (a, "#PhoneNumber#로 연락 주세요.")]
    summary = f"{josa(a, '은/는')} {place}에서 {josa(item, '을/를')} 잃어버려 {b}에게 신고하고, 찾으면 #PhoneNumber#로 연락받기로 합니다."
    return turns, summary, "분실물", [item, place]


def gift(rng, a, b):
    friend, item, occasion = name(rng), rng.choice(ITEMS), rng.choice(["생일", "졸업", "결혼", "승진", "집들이"])
    turns = [(a, f"{friend} 씨 {occasion} 선물로 뭐가 좋을까요?"), (b, "요즘 필요한 게 뭐래요?"),
             (a, f"{josa(item, '이/가')} 필요하다고 했어요."), (b, f"그럼 {josa(item, '이/가')} 좋겠네요. 같이 사러 가요.")]
    summary = f"{josa(a, '과/와')} {josa(b, '은/는')} {friend} 씨의 {occasion} 선물로 {josa(item, '을/를')} 사기로 합니다."
    return turns, summary, "선물 고르기", [friend, item]


def reschedule(rng, a, b):
    colleague, old, new = name(rng), rng.choice(HOURS), rng.choice(HOURS)
    while new == old:
        new = rng.choice(HOURS)
    day = rng.choice(DAYS)
    turns = [(a, f"{day} {old} 회의 말인데요, {colleague} 씨가 못 온대요."), (b, "그럼 시간을 옮길까요?"),
             (a, f"{new}는 어때요?"), (b, f"좋아요. {colleague} 씨에게도 {new}로 바뀌었다고 전할게요.")]
    summary = f"{josa(a, '과/와')} {josa(b, '은/는')} {colleague} 씨 때문에 {day} 회의를 {old}에서 {new}로 옮기기로 합니다."
    return turns, summary, "회의 일정", [colleague, new]


def borrowing(rng, a, b):
    item, day = rng.choice(ITEMS), rng.choice(DAYS)
    turns = [(a, f"{josa(item, '을/를')} 좀 빌려줄 수 있어요?"), (b, "언제까지 쓰실 거예요?"),
             (a, f"{day}까지 돌려줄게요."), (b, rng.choice(["그래요, 조심해서 쓰세요.", "네, 편하게 쓰세요."]))]
    summary = f"{josa(a, '은/는')} {b}에게 {josa(item, '을/를')} 빌리고 {day}까지 돌려주기로 합니다."
    return turns, summary, "물건 빌리기", [item, day]


def refund(rng, a, b):
    item = rng.choice(ITEMS)
    turns = [(a, f"어제 산 {josa(item, '을/를')} 환불하고 싶어요."), (b, "영수증과 결제하신 카드 있으세요?"),
             (a, "네, 카드 번호는 #CardNumber#예요."), (b, "카드로 환불해 드렸습니다. 3일 안에 들어올 거예요.")]
    summary = f"{josa(a, '은/는')} 어제 산 {josa(item, '을/를')} 환불받고, {josa(b, '은/는')} 카드 #CardNumber#로 3일 안에 돈이 들어온다고 안내합니다."
    return turns, summary, "환불", [item]


def email(rng, a, b):
    who, item = name(rng), rng.choice(["보고서", "계약서", "발표 자료", "견적서", "회의록", "사진"])
    turns = [(a, f"{who} 씨가 보낸 {josa(item, '을/를')} 받았어요?"), (b, "아니요, 아직 못 받았어요."),
             (a, "제 메일 #Email#로 왔는데 전달해 드릴게요."), (b, "고마워요. 확인하고 답장할게요.")]
    summary = f"{josa(a, '은/는')} {who} 씨가 #Email#로 보낸 {josa(item, '을/를')} {b}에게 전달하기로 합니다."
    return turns, summary, "자료 전달", [who, item]


def parking(rng, a, b):
    place, t = rng.choice(PLACES), rng.choice(HOURS)
    turns = [(a, f"{place} 앞에 세운 차 주인 되시죠?"), (b, "네, 차량 번호 #CarNumber# 맞아요."),
             (a, f"{t}까지 차를 빼 주셔야 해요."), (b, "죄송해요. 지금 바로 옮길게요.")]
    summary = f"{josa(a, '은/는')} {place} 앞에 주차된 #CarNumber# 차의 주인 {b}에게 {t}까지 차를 빼 달라고 합니다."
    return turns, summary, "주차", [place, t]


SITUATIONS = [meeting, hospital, delivery, restaurant, lost_item, gift, reschedule, borrowing, refund, email, parking]


def example(rng: random.Random, index: int, split: str) -> dict:
    """One dialogue: a random situation between #Person1# and #Person2# (who speaks first is random),
    sometimes with a small-talk exchange first; ``facts`` are the slot values the summary must name."""
    a, b = rng.sample(["#Person1#", "#Person2#"], 2)
    turns, summary, topic, facts = rng.choice(SITUATIONS)(rng, a, b)
    if rng.random() < 0.3:
        ask, answer = rng.choice(FILLERS)
        turns = [(b, ask), (a, answer), *turns]
    dialogue = "\n".join(f"{speaker}: {text}" for speaker, text in turns)
    return {"fname": f"{split}_{index}", "dialogue": dialogue, "summary": summary, "topic": topic, "facts": facts}


def generate(seed: int = SEED) -> dict[str, list[dict]]:
    """All splits, from one seeded generator (split sizes in ``SPLITS``)."""
    rng, seen, splits = random.Random(seed), set(), {}
    for split, n in SPLITS.items():  # no dialogue twice, across splits too: test rows are never trained on
        rows = splits[split] = []
        while len(rows) < n:
            row = example(rng, len(rows), split)
            if row["dialogue"] not in seen:
                seen.add(row["dialogue"])
                rows.append(row)
    return splits


def to_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["fname", "dialogue", "summary", "topic"], extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for split, rows in generate().items():
        path, text = HERE / f"synthetic_{split}.csv", to_csv(rows)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)} (run {Path(__file__).name})", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
