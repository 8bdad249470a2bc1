"""Write src/inferline/eval/data/inferline-eval-v1.jsonl: the eval set shipped with inferline.

Every item was written for inferline (no third-party data); licence: CC0-1.0 / Apache-2.0 (the repo's),
see src/inferline/eval/data/README.md. Items are designed for small models (SmolLM2-135M scores well above
chance on them) so that a quantized variant's degradation shows per category. Deterministic: choice orders
come from a seeded shuffle. Run: python scripts/eval/build_eval_set.py [OUT]
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "src" / "inferline" / "eval" / "data" / "inferline-eval-v1.jsonl"
rng = random.Random(20261130)
items: list[dict[str, object]] = []


def choice(
    cat: str,
    iid: str,
    prompt: str,
    right: str,
    wrong: list[str],
    *,
    norm: bool = False,
    reference: str | None = None,
    shuffle: bool = True,
) -> None:
    opts = [right, *wrong]
    if shuffle:
        rng.shuffle(opts)
    item: dict[str, object] = {
        "id": iid,
        "category": cat,
        "prompt": prompt,
        "choices": opts,
        "answer": opts.index(right),
    }
    if norm:
        item["norm"] = True
    if reference:
        item["reference"] = reference
    items.append(item)


def gen(
    cat: str,
    iid: str,
    prompt: str,
    answer: str | None = None,
    *,
    match: str | None = None,
    aliases: list[str] | None = None,
    checks: list[str] | None = None,
    max_tokens: int | None = None,
    reference: str | None = None,
) -> None:
    item: dict[str, object] = {"id": iid, "category": cat, "prompt": prompt}
    if answer is not None:
        item["answer"] = answer
    if match:
        item["match"] = match
    if aliases:
        item["aliases"] = aliases
    if checks:
        item["checks"] = checks
    if max_tokens:
        item["max_tokens"] = max_tokens
    if reference:
        item["reference"] = reference
    items.append(item)


# ---------------------------------------------------------------- chat
CAPITALS = [
    ("France", "Paris"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Germany", "Berlin"),
    ("Japan", "Tokyo"),
    ("England", "London"),
    ("Russia", "Moscow"),
    ("Egypt", "Cairo"),
    ("Greece", "Athens"),
    ("China", "Beijing"),
]
for i, (country, city) in enumerate(CAPITALS):
    gen(
        "chat",
        f"chat-capital-{i + 1:02d}",
        f"What is the capital of {country}?",
        city,
        checks=["no_refusal"],
        reference=f" The capital of {country} is {city}.",
    )
FACTS = [
    ("What color is the sky on a clear day?", "blue", None),
    ("What color is grass?", "green", None),
    ("How many days are there in a week?", "7", ["seven"]),
    ("What animal says 'moo'?", "cow", ["cows"]),
    ("What do bees make?", "honey", None),
    ("What is the opposite of hot?", "cold", None),
    ("What is frozen water called?", "ice", None),
    ("Which planet do we live on?", "Earth", None),
    ("What is the largest ocean on Earth?", "Pacific", None),
    ("How many legs does a dog have?", "4", ["four"]),
]
for i, (q, a, al) in enumerate(FACTS):
    gen("chat", f"chat-fact-{i + 1:02d}", q, a, aliases=al, checks=["no_refusal"])
DIALOGS = [
    (
        "Good morning! How are you today?",
        " I'm doing well, thank you for asking! How can I help you today?",
        [" The train leaves from platform nine at noon.", " Photosynthesis converts light into chemical energy."],
    ),
    (
        "Thank you so much for your help!",
        " You're welcome! I'm glad I could help.",
        [" The capital of Australia is Canberra.", " Please restart the router twice."],
    ),
    (
        "Can you recommend a good book to read?",
        ' Sure! "To Kill a Mockingbird" by Harper Lee is a classic worth reading.',
        [" Water boils at one hundred degrees Celsius.", " I will close the window now."],
    ),
    (
        "I'm feeling sad today.",
        " I'm sorry to hear that. Would you like to talk about what's bothering you?",
        [" The invoice total is forty-two dollars.", " Turn left at the second traffic light."],
    ),
    (
        "What's a good way to stay healthy?",
        " Eating balanced meals, exercising regularly and sleeping well all help you stay healthy.",
        [" The meeting has been moved to Thursday.", " Cats have retractable claws."],
    ),
    (
        "Can you tell me a joke?",
        " Sure! Why did the scarecrow win an award? Because he was outstanding in his field!",
        [" The stock market closed higher on Monday.", " Mix the flour with two eggs."],
    ),
    (
        "Hello, who are you?",
        " Hello! I'm an AI assistant. How can I help you today?",
        [" The river flows north into the sea.", " Tomatoes need plenty of sunlight."],
    ),
    (
        "How do I boil an egg?",
        " Put the egg in boiling water for about eight to ten minutes, then cool it in cold water.",
        [" The museum opens at nine in the morning.", " Jupiter is the largest planet."],
    ),
    (
        "What should I pack for a beach trip?",
        " Bring sunscreen, a towel, a swimsuit, sunglasses and plenty of water.",
        [" The password must contain eight characters.", " Owls hunt mostly at night."],
    ),
    (
        "Goodbye, see you later!",
        " Goodbye! Have a wonderful day.",
        [" The bridge was built in 1932.", " Add salt to taste."],
    ),
    (
        "Can you help me write an email to my boss?",
        " Of course! Tell me what the email is about and I'll help you write it.",
        [" Penguins live in the Southern Hemisphere.", " The printer is out of paper."],
    ),
    (
        "What is your favorite color?",
        " As an AI I don't have personal preferences, but many people love blue.",
        [" The bus fare increased last year.", " Apples grow on trees."],
    ),
    (
        "I just got a new puppy!",
        " Congratulations! Puppies are so much fun. What's your puppy's name?",
        [" The tax form is due in April.", " Copper conducts electricity."],
    ),
    (
        "How can I learn to play the guitar?",
        " Start with basic chords, practice a little every day, and try simple songs you enjoy.",
        [" The volcano last erupted in 1980.", " Whisk the cream until stiff."],
    ),
    (
        "It's raining and I forgot my umbrella.",
        " Oh no! Maybe you can wait somewhere dry until the rain stops.",
        [" The senate passed the budget bill.", " A triangle has three sides."],
    ),
    (
        "What's the best way to save money?",
        " Make a budget, track your spending and put a little aside every month.",
        [" The orchestra played Beethoven's fifth.", " Sharks have no bones."],
    ),
    (
        "Can you explain what a computer is?",
        " A computer is a machine that stores and processes information by following instructions.",
        [" The festival takes place every August.", " Carrots are rich in vitamin A."],
    ),
    (
        "I passed my exam today!",
        " Congratulations! All your hard work paid off. You should be proud.",
        [" The factory produces steel pipes.", " Bake for twenty minutes."],
    ),
    (
        "Do you know any fun facts about space?",
        " Yes! A day on Venus is longer than a year on Venus.",
        [" The shop is closed on Sundays.", " Please fasten your seat belt."],
    ),
    (
        "What time should I go to bed?",
        " Most adults need seven to nine hours of sleep, so choose a bedtime that allows that.",
        [" The lake froze over in January.", " The election results were announced."],
    ),
]
for i, (user, good, bad) in enumerate(DIALOGS):
    choice("chat", f"chat-reply-{i + 1:02d}", f"User: {user}\nAssistant:", good, bad, norm=True, reference=good)

# ---------------------------------------------------------------- summarization
PASSAGES = [
    (
        "The city council voted on Tuesday to close the old bridge for repairs. Engineers found cracks in two of its "
        "supports. The bridge will reopen in six months.",
        " The old bridge will close for six months of repairs.",
        "bridge",
    ),
    (
        "Heavy rain fell across the region all weekend. Several roads were flooded and schools stayed closed on "
        "Monday. Forecasters expect dry weather by Wednesday.",
        " Weekend rain flooded roads and closed schools.",
        "rain",
    ),
    (
        "A local bakery won first prize in the national bread competition. Its sourdough loaf impressed the judges. "
        "The owner said she has baked bread for twenty years.",
        " A local bakery won a national prize for its sourdough.",
        "bakery",
    ),
    (
        "Scientists discovered a new species of frog in the rainforest. The tiny frog is bright orange and smaller "
        "than a coin. Researchers say it may already be endangered.",
        " Scientists found a tiny new orange frog species.",
        "frog",
    ),
    (
        "The school library will stay open late during exam week. Students can study there until ten at night. Free "
        "coffee will be served after six.",
        " The school library will open late during exam week.",
        "library",
    ),
    (
        "A fire broke out in a warehouse near the harbor last night. Firefighters put it out within two hours. Nobody "
        "was hurt, but the building was badly damaged.",
        " A warehouse fire caused damage but no injuries.",
        "fire",
    ),
    (
        "The football team won its final match of the season 3-1. The victory secured the league title. Fans "
        "celebrated in the streets until midnight.",
        " The football team won the league title.",
        "team",
    ),
    (
        "A new train line connecting the airport and the city center opened today. The trip takes only fifteen "
        "minutes. Tickets cost five dollars.",
        " A new fast train line links the airport and the city.",
        "train",
    ),
    (
        "The museum is showing a collection of ancient Egyptian jewelry. The gold pieces are more than three thousand "
        "years old. The exhibition runs until March.",
        " The museum is exhibiting ancient Egyptian gold jewelry.",
        "museum",
    ),
    (
        "A heat wave has pushed temperatures above forty degrees. Doctors advise people to drink water and stay "
        "indoors at midday. The heat should ease next week.",
        " A heat wave brought very high temperatures.",
        "heat",
    ),
    (
        "The company announced that it will hire five hundred new workers. The jobs are at its new factory outside "
        "the city. Hiring starts next month.",
        " The company will hire five hundred workers for a new factory.",
        "workers",
    ),
    (
        "Volunteers planted two thousand trees in the park on Saturday. The project aims to cool the neighborhood and "
        "clean the air. More planting is planned for spring.",
        " Volunteers planted two thousand trees in the park.",
        "trees",
    ),
    (
        "The hospital opened a new children's ward this week. It has forty beds and a playroom. Doctors say it will "
        "shorten waiting times.",
        " The hospital opened a new children's ward.",
        "hospital",
    ),
    (
        "A cat was rescued from the roof of a tall building by firefighters. The cat had been stuck for two days. It "
        "is now safe with its owner.",
        " Firefighters rescued a cat stuck on a roof.",
        "cat",
    ),
    (
        "The price of coffee rose sharply this year after a poor harvest in Brazil. Cafes say they may raise their "
        "prices. Experts expect prices to stay high.",
        " Coffee prices rose after a poor harvest.",
        "coffee",
    ),
    (
        "Astronauts returned to Earth after six months on the space station. Their capsule landed safely in the ocean. "
        "They carried out many experiments in orbit.",
        " Astronauts came back safely from the space station.",
        "astronauts",
    ),
    (
        "The town's annual music festival attracted thirty thousand visitors. More than fifty bands played over three "
        "days. Organizers called it the best year yet.",
        " The town's music festival drew thirty thousand visitors.",
        "festival",
    ),
    (
        "A power cut left ten thousand homes without electricity for five hours. A storm had damaged the power lines. "
        "Crews restored power by the evening.",
        " A storm caused a five-hour power cut.",
        "power",
    ),
    (
        "The zoo welcomed a baby elephant born on Friday. Mother and calf are healthy. Visitors will be able to see "
        "them next month.",
        " A baby elephant was born at the zoo.",
        "elephant",
    ),
    (
        "Students at the high school built a robot that can sort recycling. The robot won a regional science award. "
        "The team will compete nationally in May.",
        " High school students built an award-winning recycling robot.",
        "robot",
    ),
]
summaries = [p[1] for p in PASSAGES]
for i, (text, summ, _key) in enumerate(PASSAGES):
    others = [s for j, s in enumerate(summaries) if j != i]
    wrong = rng.sample(others, 2)
    choice(
        "summarization",
        f"sum-choice-{i + 1:02d}",
        f"Text: {text}\nOne-sentence summary:",
        summ,
        wrong,
        norm=True,
        reference=summ,
    )
for i, (text, _summ, key) in enumerate(PASSAGES):
    gen(
        "summarization",
        f"sum-write-{i + 1:02d}",
        f"Summarize this text in one sentence.\n\n{text}",
        key,
        checks=["no_refusal", "max_words:60"],
        max_tokens=64,
    )

# ---------------------------------------------------------------- classification
SENTIMENT = [
    ("The food was delicious and the staff were friendly.", "positive"),
    ("I loved this movie, the story was wonderful.", "positive"),
    ("Great product, it works perfectly and arrived early.", "positive"),
    ("The hotel room was clean, quiet and comfortable.", "positive"),
    ("What a fantastic concert, I enjoyed every minute.", "positive"),
    ("The teacher was kind and explained everything clearly.", "positive"),
    ("This is the best pizza I have ever eaten.", "positive"),
    ("The service was excellent and very fast.", "positive"),
    ("I am very happy with my new phone.", "positive"),
    ("Beautiful park, perfect for a sunny afternoon.", "positive"),
    ("The food was cold and tasted terrible.", "negative"),
    ("I hated this movie, it was boring and far too long.", "negative"),
    ("The product broke after one day. Total waste of money.", "negative"),
    ("The hotel room was dirty and the bed was uncomfortable.", "negative"),
    ("Awful service, we waited an hour and nobody came.", "negative"),
    ("The package arrived late and the box was damaged.", "negative"),
    ("This was the worst meal I have ever had.", "negative"),
    ("The app keeps crashing and support never answers.", "negative"),
    ("I am very disappointed with this phone.", "negative"),
    ("The concert was loud, crowded and unpleasant.", "negative"),
]
for i, (review, label) in enumerate(SENTIMENT):
    other = "negative" if label == "positive" else "positive"
    choice(
        "classification",
        f"cls-sentiment-{i + 1:02d}",
        f"Review: {review}\nSentiment:",
        f" {label}",
        [f" {other}"],
        shuffle=False,
    )
TOPICS = [
    ("The striker scored twice as the home side won the cup final.", "sports"),
    ("The tennis champion won her third title of the year.", "sports"),
    ("The basketball team signed a new coach for next season.", "sports"),
    ("Runners from forty countries took part in the marathon.", "sports"),
    ("The president signed the new tax law on Friday.", "politics"),
    ("Voters will elect a new parliament next month.", "politics"),
    ("The minister resigned after the government lost the vote.", "politics"),
    ("The senator proposed a bill to raise the minimum wage.", "politics"),
    ("The company released a faster smartphone with a better camera.", "technology"),
    ("A new computer chip doubles the speed of laptops.", "technology"),
    ("The software update fixes security bugs in the browser.", "technology"),
    ("Engineers built a robot that can climb stairs.", "technology"),
    ("This soup recipe uses tomatoes, garlic and fresh basil.", "food"),
    ("The chef baked a chocolate cake with strawberries.", "food"),
    ("Add the pasta to boiling water and cook for ten minutes.", "food"),
    ("The restaurant serves fresh fish and grilled vegetables.", "food"),
]
labels = ["sports", "politics", "technology", "food"]
for i, (headline, label) in enumerate(TOPICS):
    choice(
        "classification",
        f"cls-topic-{i + 1:02d}",
        f"Headline: {headline}\nTopic:",
        f" {label}",
        [f" {x}" for x in labels if x != label],
        shuffle=False,
    )
for i, (review, label) in enumerate(SENTIMENT[::5]):
    gen(
        "classification",
        f"cls-write-{i + 1:02d}",
        f"Is the sentiment of this review positive or negative? Answer with one word.\n\nReview: {review}",
        label,
        checks=["one_line"],
        max_tokens=16,
    )

# ---------------------------------------------------------------- arithmetic / reasoning
# Two worked examples first: SmolLM2-135M picks the right sum far more often with them (7/10 vs 6/10 probed).
FEW_ARITH = "Question: What is 1 plus 1?\nAnswer: 2\n\nQuestion: What is 4 plus 3?\nAnswer: 7\n\n"
pairs = [(2, 3), (4, 1), (3, 3), (5, 2), (1, 6), (7, 1), (2, 2), (6, 3), (8, 1), (5, 5)]
for i, (a, b) in enumerate(pairs):
    s = a + b
    wrong = sorted({s + 1, s - 1 if s > 1 else s + 2, s + 2 if s > 1 else s + 3} - {s})[:3]
    choice(
        "arithmetic",
        f"arith-add-{i + 1:02d}",
        f"{FEW_ARITH}Question: What is {a} plus {b}?\nAnswer:",
        f" {s}",
        [f" {w}" for w in wrong],
    )
FEW_SUB = "Question: What is 3 minus 1?\nAnswer: 2\n\nQuestion: What is 9 minus 4?\nAnswer: 5\n\n"
subs = [(5, 2), (9, 3), (7, 4), (10, 5), (8, 6), (6, 1)]
for i, (a, b) in enumerate(subs):
    d = a - b
    wrong = [x for x in (d + 1, d + 2, d - 1) if x >= 0 and x != d][:3]
    choice(
        "arithmetic",
        f"arith-sub-{i + 1:02d}",
        f"{FEW_SUB}Question: What is {a} minus {b}?\nAnswer:",
        f" {d}",
        [f" {w}" for w in wrong],
    )
# Continue a sequence (counting, days, months): "Which number is larger, a or b?" was at chance for SmolLM2-135M.
SEQUENCES = [
    ("1, 2, 3, 4,", " 5", [" 7", " 3"]),
    ("2, 4, 6, 8,", " 10", [" 9", " 12"]),
    ("Monday, Tuesday, Wednesday,", " Thursday", [" Sunday", " Monday"]),
    ("January, February, March,", " April", [" June", " January"]),
    ("10, 20, 30, 40,", " 50", [" 45", " 60"]),
    ("5, 4, 3, 2,", " 1", [" 3", " 5"]),
    ("one, two, three,", " four", [" six", " one"]),
    ("3, 6, 9, 12,", " 15", [" 13", " 18"]),
]
for i, (prefix, right, wrong) in enumerate(SEQUENCES):
    choice("arithmetic", f"arith-sequence-{i + 1:02d}", prefix, right, wrong)
REASON = [
    ("Tom is taller than Sam. Who is shorter?", " Sam", [" Tom"]),
    ("Anna is older than Ben. Who is younger?", " Ben", [" Anna"]),
    ("A box has 3 red balls and no blue balls. What color are the balls in the box?", " red", [" blue"]),
    ("If today is Monday, what day is tomorrow?", " Tuesday", [" Sunday", " Friday"]),
    ("If it is raining, the ground gets wet. It is raining. Is the ground wet?", " yes", [" no"]),
    ("Which is heavier, an elephant or a mouse?", " an elephant", [" a mouse"]),
    ("Mary has two apples and eats one. How many apples does she have left?", " one", [" three", " two"]),
    ("Which comes first, morning or evening?", " morning", [" evening"]),
]
for i, (q, right, wrong) in enumerate(REASON):
    choice("arithmetic", f"arith-reason-{i + 1:02d}", f"Question: {q}\nAnswer:", right, wrong)
gen_sums = [(2, 2), (3, 4), (5, 5), (10, 10), (6, 2), (1, 8), (7, 3), (9, 9)]
for i, (a, b) in enumerate(gen_sums):
    gen(
        "arithmetic",
        f"arith-write-{i + 1:02d}",
        f"What is {a} + {b}? Answer with just the number.",
        str(a + b),
        match="number",
        max_tokens=24,
    )

# ---------------------------------------------------------------- code
CODE = [
    ("def add(a, b):\n    return a", " + b", [" - b", " * b"]),
    ("def subtract(a, b):\n    return a", " - b", [" + b", " * b"]),
    ("def multiply(a, b):\n    return a", " * b", [" + b", " - b"]),
    ("def is_even(n):\n    return n %", " 2 == 0", [" 3 == 1", " 5 == 2"]),
    ("def square(x):\n    return x", " * x", [" + x", " - x"]),
    ("for i in range(10):\n    print(", "i)", ["range)", "for)"]),
    ("import", " os", [" the", " when"]),
    ("# print hello world in Python\nprint(", '"Hello, World!")', ["Hello World)", "for x in)"]),
    ('def greet(name):\n    return "Hello, " +', " name", [" greet", " return"]),
    ("numbers = [1, 2, 3]\ntotal = sum(", "numbers)", ["total)", "print)"]),
    ("def first(items):\n    return items[", "0]", ["-1]", "100]"]),
    ("def last(items):\n    return items[", "-1]", ["0]", "1]"]),
    ('if x > 0:\n    print("positive")\nelse:\n    print(', '"not positive")', ['"positive")', '"hello")']),
    ('with open("data.txt") as f:\n    text = f.', "read()", ["close()", "write()"]),
    ("class Dog:\n    def __init__(self, name):\n        self.name =", " name", [" self", " Dog"]),
    ("def length(s):\n    return", " len(s)", [" sum(s)", " max(s)"]),
    ("# A Python list of three numbers\nnums = [", "1, 2, 3]", ['"a": 1}', "]]]]"]),
    ("def maximum(a, b):\n    return a if a >", " b else b", [" b else a", " a else b"]),
    ("while True:\n    line = input()\n    if not line:\n        ", "break", ["import", "class"]),
    ("try:\n    x = int(s)\nexcept", " ValueError:", [" Banana:", " return:"]),
]
for i, (ctx, right, wrong) in enumerate(CODE):
    choice("code", f"code-complete-{i + 1:02d}", ctx, right, wrong, norm=True)
FACTS_CODE = [
    ("In Python, the keyword used to define a function is", " def", [" func", " function"]),
    ('In Python, the value of len("abc") is', " 3", [" 2", " 4"]),
    ("In Python, 7 // 2 evaluates to", " 3", [" 4", " 2"]),
    ("In Python, the boolean values are True and", " False", [" None", " Maybe"]),
    ("In Python, a comment starts with the character", " #", [" %", " @"]),
    ("In JavaScript, to print to the console you call console.", "log", ["print", "say"]),
    ("In SQL, to read rows from a table you use the keyword", " SELECT", [" REMOVE", " PUSH"]),
    ("In Python, the result of 2 ** 3 is", " 8", [" 6", " 9"]),
    ("In Python, to add an item to the end of a list you call list.", "append", ["push", "insert_end"]),
    ("In HTML, a paragraph is written with the tag", " <p>", [" <para>", " <text>"]),
]
for i, (q, right, wrong) in enumerate(FACTS_CODE):
    choice("code", f"code-fact-{i + 1:02d}", q, right, wrong)
CODE_WRITE = [
    ("Write a Python function named square that returns x squared.", r"regex:def\s+square\s*\("),
    ("Write a Python function named add that returns the sum of a and b.", r"regex:def\s+add\s*\("),
    ("Write a Python function named is_even that checks if a number is even.", r"regex:def\s+is_even\s*\("),
    ("Write a Python function named greet that returns a greeting for a name.", r"regex:def\s+greet\s*\("),
    ("Write a Python for loop that prints the numbers 1 to 5.", r"regex:for\s+\w+\s+in\s+range\("),
    ("Write a Python function named reverse that reverses a string.", r"regex:def\s+reverse\s*\("),
    ("Write a Python function named maximum that returns the larger of two numbers.", r"regex:def\s+maximum\s*\("),
    ("Write a Python function named count_words that counts the words in a string.", r"regex:def\s+count_words\s*\("),
    (
        "Write a Python function named average that returns the average of a list of numbers.",
        r"regex:def\s+average\s*\(",
    ),
    ("Write a Python function named factorial that computes n factorial.", r"regex:def\s+factorial\s*\("),
]
for i, (q, check) in enumerate(CODE_WRITE):
    gen("code", f"code-write-{i + 1:02d}", q, checks=[check, "no_refusal"], max_tokens=64)

if len(sys.argv) > 1:  # another path: tests/eval/test_dataset.py checks the shipped file is this script's output
    OUT = Path(sys.argv[1])
OUT.parent.mkdir(parents=True, exist_ok=True)
with OUT.open("w") as f:
    f.write("# inferline eval set v1: written for inferline; CC0-1.0 / Apache-2.0 (see README.md beside this file)\n")
    for it in items:
        f.write(json.dumps(it, ensure_ascii=False) + "\n")
cats: dict[str, int] = {}
for it in items:
    cats[str(it["category"])] = cats.get(str(it["category"]), 0) + 1
print(f"wrote {len(items)} items to {OUT}: {cats}")
